import torch

from tasks.ensemble import Ensemble, train_ensemble
from tasks.search.edits import apply_edit
from tasks.surrogate import Surrogate
from tasks.training import Defense, TrainingConfig


def _ensemble(length: int, vocabulary: int) -> Ensemble:
    torch.manual_seed(0)
    members = [Surrogate((length, vocabulary), (16, 8)) for _ in range(3)]
    for m, member in enumerate(members):
        member.target_mean.fill_(m)
        member.target_std.fill_(2.0)
    return Ensemble(members).eval()


def _rows(n: int, length: int, vocabulary: int, generator: torch.Generator) -> torch.Tensor:
    rows = torch.randint(1, vocabulary, (n, length), generator=generator)
    end = torch.randint(1, length + 1, (n, 1), generator=generator)
    return torch.where(torch.arange(length)[None] < end, rows, 0)


def test_predict_tokens_equals_the_dense_forward_pass():
    length, vocabulary = 9, 6
    ensemble = _ensemble(length, vocabulary)
    rows = _rows(50, length, vocabulary, torch.Generator().manual_seed(1))
    dense = ensemble(torch.nn.functional.one_hot(rows, vocabulary).float())
    torch.testing.assert_close(ensemble.predict_tokens(rows, vocabulary, chunk=7), dense, atol=1e-5, rtol=1e-5)


def test_predict_edits_equals_scoring_the_edited_rows():
    length, vocabulary = 9, 6
    generator = torch.Generator().manual_seed(2)
    ensemble = _ensemble(length, vocabulary)
    rows = _rows(20, length, vocabulary, generator)
    n = 600
    parent = torch.randint(0, len(rows), (n,), generator=generator)
    kind = torch.randint(0, 3, (n,), generator=generator)
    position = torch.randint(0, length, (n,), generator=generator)
    token = torch.randint(1, vocabulary, (n,), generator=generator)
    children = apply_edit(rows, kind, position, token, parent=parent)
    expected = ensemble.predict_tokens(children, vocabulary)
    got = ensemble.predict_edits(rows, parent, kind, position, token, vocabulary, chunk=64)
    assert got.shape == (3, n)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # Every kind and the last position are covered, so the suffix sums' ends are checked too.
    assert set(kind.tolist()) == {0, 1, 2} and (position == length - 1).any()


def test_bfloat16_scoring_stays_within_bfloat16_rounding_of_float32_and_keeps_the_output_in_float32():
    length, vocabulary = 9, 6
    generator = torch.Generator().manual_seed(3)
    ensemble = _ensemble(length, vocabulary)
    rows = _rows(200, length, vocabulary, generator)
    exact = ensemble.predict_tokens(rows, vocabulary)
    fast = ensemble.predict_tokens(rows, vocabulary, precision=torch.bfloat16)
    assert fast.dtype == torch.float32
    # bfloat16 keeps 8 significant bits: a relative error of 2^-8 per hidden value, not float32's 2^-24.
    error = (fast - exact).abs().max() / exact.std()
    assert 1e-6 < error < 2**-6
    parent = torch.arange(len(rows))
    kind, position, token = torch.zeros_like(parent), torch.zeros_like(parent), torch.ones_like(parent)
    edits = ensemble.predict_edits(rows, parent, kind, position, token, vocabulary, precision=torch.bfloat16)
    children = ensemble.predict_tokens(apply_edit(rows, kind, position, token), vocabulary)
    assert (edits - children).abs().max() / children.std() < 2**-6


def test_an_ensemble_is_the_same_whatever_state_torchs_global_generator_is_in():
    # torch seeds its global generator differently in every process: the weights must come from the config's seed.
    x, y = torch.rand(64, 6), torch.rand(64)
    config = TrainingConfig(epochs=2, batch_size=16, defense=Defense("none"), seed=3)
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        ensemble, _ = train_ensemble((6,), (8,), config, 2, x, y, x[:0], y[:0])
        weights.append(torch.cat([p.detach().flatten() for p in ensemble.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_a_seeded_surrogate_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = Surrogate((4,), (8,), seed=11)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(first.net[1].weight, Surrogate((4,), (8,), seed=11).net[1].weight)
