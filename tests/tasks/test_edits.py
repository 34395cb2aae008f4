"""Token-row operators beside the edits: one-point crossover (tasks/search/edits.py)."""

import torch

from tasks.search.edits import crossover, lengths, random_crossovers


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
