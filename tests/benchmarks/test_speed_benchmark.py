"""benchmarks/speed.py's analytic FLOP count agrees with torch's own FLOP counter; its interval union is right.
Nothing here is timed."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tasks.surrogate import Surrogate

_SPEC = importlib.util.spec_from_file_location(
    "speed_benchmark", Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(speed)


@pytest.fixture
def model():
    return Surrogate((55, 27), (256, 128)).eval()


def test_forward_flops_are_two_per_multiply_add(model):
    assert speed.linear_layers(model) == [(1485, 256), (256, 128), (128, 1)]
    assert speed.forward_flops_per_design(model) == 2 * (1485 * 256 + 256 * 128 + 128 * 1)


def test_counts_match_torch_flop_counter(model):
    batch = 8
    # FlopCounterMode cannot watch autograd.grad with respect to a leaf, so differentiate w.r.t. a non-leaf copy:
    # the same matmuls run.
    x = torch.rand(batch, 55, 27, requires_grad=True) * 1
    with FlopCounterMode(display=False) as forward_only:
        model(x)
    assert forward_only.get_total_flops() == batch * speed.forward_flops_per_design(model)
    with FlopCounterMode(display=False) as search_step:
        torch.autograd.grad(model(x).sum(), x)  # what the search asks for: the input gradient only
    assert search_step.get_total_flops() == batch * speed.input_gradient_flops_per_design(model)


def test_search_flops_add_record_forwards(model):
    forward = speed.forward_flops_per_design(model)
    assert speed.search_flops(model, batch=4, steps=10, recorded_designs=7) == 10 * 4 * 2 * forward + 7 * forward


def test_covered_seconds_counts_overlaps_once():
    assert speed.covered_seconds([]) == 0
    assert speed.covered_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.8)]) == pytest.approx(4.0)
