import torch

from conftest import TinyCNN
from subdistill.data import Subtask
from subdistill.fingerprint import model_fingerprint
from subdistill.models.restricted import restrict_teacher


def test_fingerprint_tracks_weights_buffers_and_subtask():
    torch.manual_seed(0)
    model = TinyCNN()
    same = TinyCNN()
    same.load_state_dict(model.state_dict())
    assert model_fingerprint(model) == model_fingerprint(same)
    with torch.no_grad():
        same.head.bias[0] += 1e-6
    assert model_fingerprint(model) != model_fingerprint(same)
    a = restrict_teacher(model, Subtask((0, 1), ("a", "b")))
    b = restrict_teacher(model, Subtask((0, 2), ("a", "c")))
    assert model_fingerprint(a) != model_fingerprint(b)
