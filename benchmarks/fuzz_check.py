"""Fuzzing ``subdistill check``: mutated digits configs, model arguments and method options.

Each example mutates the base config of ``tests/test_hostile_configs.py`` (one key changed to a
value of its type, an arbitrary value, deleted, or a new key; or up to three model arguments or
method options set to extreme values) and runs ``subdistill check`` in this process. Outcomes:
``ok`` (exit 0), ``one-line`` (exit 2, one ``error:`` line), ``traceback`` (any other
exception), ``hang`` (over ``--timeout`` seconds). Seeded: the same seed gives the same configs.

    python benchmarks/fuzz_check.py --examples 2000 --out benchmarks/results/fuzz_check.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from subdistill.cli import main  # noqa: E402
from subdistill.methods import describe_methods  # noqa: E402
from subspace_fit import machine_info  # noqa: E402
from test_hostile_configs import BASE, METHOD_KEYS, MODEL_KEYS, PATHS  # noqa: E402

EXTREMES = [0, 1, -1, 2, 3, 7, 2**31, 10**12, -2**40, 0.5, 2.5, 1e308, -1e308, 1e-308,
            float("nan"), float("inf"), True, False, None, "", "x", "cpu", "cosine", [],
            [1, 2, 3], [2**20, 8, 8], {"a": 1}]


def _value(rng: random.Random, like: object) -> object:
    if isinstance(like, bool) or rng.random() < 0.5:
        return rng.choice(EXTREMES)
    if isinstance(like, int):
        return rng.randint(-3, 300)
    if isinstance(like, float):
        return rng.choice([rng.uniform(-10, 10), rng.uniform(0, 1)])
    if isinstance(like, list):
        return [rng.randint(-2, 64) for _ in range(rng.randint(0, 4))]
    return rng.choice(EXTREMES)


def mutated(rng: random.Random) -> dict:
    """One fuzzed config."""
    config = copy.deepcopy(BASE)
    kind = rng.choice(["path", "path", "model", "method"])
    if kind == "model":
        role = rng.choice(["teacher", "student"])
        for _ in range(rng.randint(1, 3)):
            config[role]["args"][rng.choice(MODEL_KEYS)] = rng.choice(EXTREMES)
        return config
    if kind == "method":
        config["method"] = {"name": rng.choice(sorted(describe_methods()))}
        for _ in range(rng.randint(1, 3)):
            config["method"][rng.choice(METHOD_KEYS)] = rng.choice(EXTREMES)
        return config
    path = rng.choice(PATHS)
    node = config
    for key in path[:-1]:
        node = node[key]
    action = rng.choice(["like", "like", "replace", "delete", "add"])
    if action == "like":
        node[path[-1]] = _value(rng, node[path[-1]])
    elif action == "replace":
        node[path[-1]] = rng.choice(EXTREMES)
    elif action == "delete":
        del node[path[-1]]
    else:
        node[rng.choice(["x", "gird", "epoch", "k"])] = rng.choice(EXTREMES)
    return config


def run(config: dict, folder: Path, timeout: int) -> str:
    """The outcome of ``subdistill check`` on ``config``."""
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    def hang(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, hang)
    signal.alarm(timeout)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["check", str(path)])
    except TimeoutError:
        return "hang"
    except Exception:  # noqa: BLE001 - what the fuzzing is looking for
        return "traceback"
    finally:
        signal.alarm(0)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    if status == 0:
        return "ok"
    return "one-line" if status == 2 and len(lines) == 1 else f"exit {status}"


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    rng, outcomes, started = random.Random(args.seed), Counter(), time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.examples):
            outcomes[run(mutated(rng), Path(folder), args.timeout)] += 1
    figures = {"machine": machine_info(), "examples": args.examples, "seed": args.seed,
               "outcomes": dict(outcomes), "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main_()
