"""Token-row operators (tasks/search/edits.py): single edits applied in batches, one-point crossover."""

import torch

from tasks.search.edits import DELETE, INSERT, SUBSTITUTE, apply_edit, crossover, lengths, random_crossovers


def _edited_one_by_one(row: list[int], kind: int, position: int, token: int) -> list[int]:
    if kind == SUBSTITUTE:
        return row[:position] + [token] + row[position + 1:]
    if kind == INSERT:
        return (row[:position] + [token] + row[position:])[:len(row)]
    return row[:position] + row[position + 1:] + [0]


def test_many_edits_of_a_few_rows_equal_the_edits_made_one_by_one():
    # 3 rows × 3 kinds × 6 positions ≤ 400 children: apply_edit moves each row every way once and picks rows from
    # that table; a child per row (no parent) takes the per-child gather. Both must equal the plain list edits.
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(1, 9, (3, 6), generator=generator)
    n = 400
    parent = torch.randint(0, 3, (n,), generator=generator)
    kind = torch.randint(0, 3, (n,), generator=generator)
    position = torch.randint(0, 6, (n,), generator=generator)
    token = torch.randint(1, 9, (n,), generator=generator)
    expected = [_edited_one_by_one(rows[p].tolist(), k, i, t)
                for p, k, i, t in zip(parent.tolist(), kind.tolist(), position.tolist(), token.tolist())]
    assert apply_edit(rows, kind, position, token, parent=parent).tolist() == expected
    assert apply_edit(rows[parent], kind, position, token).tolist() == expected
    assert {SUBSTITUTE, INSERT, DELETE} == set(kind.tolist())


def test_crossover_joins_a_prefix_of_the_first_row_to_a_suffix_of_the_second():
    first = torch.tensor([[1, 2, 3, 4, 0, 0], [5, 6, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    second = torch.tensor([[7, 8, 9, 0, 0, 0], [1, 1, 2, 2, 3, 3], [7, 8, 9, 0, 0, 0]])
    children = crossover(first, second, torch.tensor([2, 1, 5]), torch.tensor([1, 0, 0]))
    assert children.tolist() == [[1, 2, 8, 9, 0, 0],      # padding after the second row's last token
                                 [5, 1, 1, 2, 2, 3],      # cut to the rows' width
                                 [1, 2, 3, 4, 5, 7]]


def test_random_crossovers_keep_a_prefix_and_read_the_rest_from_the_partner():
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(1, 9, (200, 12), generator=generator) * (torch.arange(12) < 8)
    second = torch.randint(1, 9, (200, 12), generator=generator) * (torch.arange(12) < 10)
    children = random_crossovers(first, second, generator)
    cuts = set()
    for child, a, b in zip(children.tolist(), first.tolist(), second.tolist()):
        size = int(lengths(torch.tensor([child]))[0])
        matches = [(i, j) for i in range(1, 9) for j in range(10)   # the tail: all of b's rest, or cut at 12
                   if child[:i] == a[:i] and child[i:size] == b[j:j + size - i]
                   and (i + 10 - j >= 12 or size == i + 10 - j)]
        assert matches, (child, a, b)
        cuts.add(matches[0][0])
    assert len(cuts) > 5   # cuts spread over the row, not one fixed point
