import torch
from torch import nn

from subdistill.explain.target import (
    gap_function,
    gap_output_relevance,
    logit_gap,
    logit_gap_grad,
    runner_up,
)


def test_logit_gap_values():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    labels = torch.tensor([0, 2])
    assert runner_up(logits, labels).tolist() == [2, 1]
    assert torch.equal(logit_gap(logits, labels), torch.tensor([1.0, -1.0]))


def test_gap_grad_matches_autograd():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    (grad,) = torch.autograd.grad(logit_gap(logits, labels).sum(), logits)
    assert torch.equal(logit_gap_grad(logits.detach(), labels), grad)


def test_output_relevance_sums_to_gap_in_subtask_columns():
    output = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    columns = torch.tensor([2, 5, 7])
    labels = torch.tensor([0, 1, 2, 1])
    relevance = gap_output_relevance(labels, columns)(output)
    outside = torch.ones(10, dtype=torch.bool)
    outside[columns] = False
    assert torch.all(relevance[:, outside] == 0)
    torch.testing.assert_close(relevance.sum(1), logit_gap(output[:, columns], labels))


def test_gap_function_calls_model():
    model = nn.Linear(3, 4)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(gap_function(model)(x, y), logit_gap(model(x), y))
