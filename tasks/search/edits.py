"""Token edits on padded token rows (SELFIES, or any designer with a token interface), batched in torch.

A row is ``(L,)`` token indices with padding index 0 (SELFIES ``[nop]``) after the last token. Three edits:
substitution ``(i, b)`` sets position ``i`` to token ``b`` (``i`` = length appends); insertion ``(i, b)`` puts
``b`` before position ``i`` and shifts the rest right (the last position falls off); deletion ``(i)`` removes
position ``i`` and shifts the rest left. Every SELFIES string decodes to a valid molecule (Krenn et al. 2020), so
every edit is a design.

:func:`first_order_scores` is HotFlip's estimate (Ebrahimi et al. 2018, *HotFlip: White-Box Adversarial Examples
for Text Classification*, ACL): with ``g`` the gradient of the objective at the one-hot ``x``, a change to
``x' = x + Δ`` is worth ``⟨g, Δ⟩`` to first order — ``g[i, b] − g[i, a]`` for a substitution, and the sum of such
terms over the shifted positions for an insertion or a deletion, so one backward pass ranks every single edit.
"""

from __future__ import annotations

import functools

import torch

SUBSTITUTE, INSERT, DELETE = 0, 1, 2


def lengths(rows: torch.Tensor) -> torch.Tensor:
    """Tokens before the padding, per row (a pad inside a row counts as a token)."""
    nonzero = rows != 0
    positions = torch.arange(rows.shape[1], device=rows.device)
    return torch.where(nonzero, positions + 1, 0).amax(dim=1)


def apply_edit(rows: torch.Tensor, kind: torch.Tensor, position: torch.Tensor, token: torch.Tensor,
               parent: torch.Tensor | None = None) -> torch.Tensor:
    """One edit per child, all children at once (kind: :data:`SUBSTITUTE`, :data:`INSERT` or :data:`DELETE`).

    Child ``c`` is ``rows[parent[c]]`` edited (``parent`` defaults to one child per row), so a thousand edits of
    one row never copy the row a thousand times first.

    >>> rows = torch.tensor([[1, 2, 3, 0]] * 3)
    >>> apply_edit(rows, torch.tensor([0, 1, 2]), torch.tensor([1, 1, 1]), torch.tensor([4, 4, 0])).tolist()
    [[1, 4, 3, 0], [1, 4, 2, 3], [1, 3, 0, 0]]
    >>> apply_edit(rows[:1], torch.tensor([2, 1]), torch.tensor([0, 3]), torch.tensor([0, 5]),
    ...            parent=torch.tensor([0, 0])).tolist()
    [[2, 3, 0, 0], [1, 2, 3, 5]]
    """
    n_rows, length = rows.shape
    if parent is None:
        parent = torch.arange(n_rows, device=rows.device)
    # Every (kind, position) moves the row's entries the same way: one (3·L, L) table of source columns, with
    # column L reading the zero padding appended below.
    padded = torch.cat([rows, rows.new_zeros(n_rows, 1)], dim=1)
    source = _source_table(length, rows.device)
    if n_rows * 3 * length <= len(parent):
        # Many children a row (the loop's edits of its incumbents): every row moved every way once, then each
        # child is one row of that table instead of L gathers.
        moved = padded[:, source].reshape(-1, length)
        children = moved.index_select(0, (parent * 3 + kind) * length + position)
    else:
        children = padded.index_select(0, parent).gather(1, source[kind * length + position])
    # The new token goes in at `position` (a deletion writes back what is there: a scatter, not a masked put).
    at = position[:, None]
    new = torch.where(kind[:, None] != DELETE, token[:, None].to(children.dtype), children.gather(1, at))
    return children.scatter_(1, at, new)


@functools.lru_cache(maxsize=16)
def _source_table(length: int, device: torch.device) -> torch.Tensor:
    j = torch.arange(length, device=device)[None]
    p = torch.arange(length, device=device)[:, None]
    substitute = j.expand(length, length)
    insert = j - (j > p).long()                                  # position p itself is overwritten by the token
    delete = torch.where(j >= p, j + 1, j)                       # j + 1 = length reads the padding column
    return torch.cat([substitute, insert, delete])


def first_order_scores(grad: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """HotFlip scores of every single edit of every row: ``(n, 2·L·V + L)``, laid out as substitutions
    ``(L, V)``, insertions ``(L, V)``, deletions ``(L)`` (decode with :func:`edit_of`). Edits that change
    nothing or fall outside the row (beyond one past its last token) get ``-inf``.

    Args:
        grad: ``(n, L, V)``, the objective's gradient at the one-hot of ``rows``.
        rows: ``(n, L)`` token indices.
    """
    n, length, vocabulary = grad.shape
    current = grad.gather(2, rows[..., None]).squeeze(-1)                        # g[j, t_j]
    pad = torch.zeros((n, 1), dtype=rows.dtype, device=rows.device)
    following = torch.cat([rows[:, 1:], pad], dim=1)                             # t_{j+1}
    preceding = torch.cat([pad, rows[:, :-1]], dim=1)                            # t_{j-1}
    shift_left = grad.gather(2, following[..., None]).squeeze(-1) - current      # row j takes t_{j+1}
    shift_right = grad.gather(2, preceding[..., None]).squeeze(-1) - current     # row j takes t_{j-1}
    suffix_left = shift_left.flip(1).cumsum(1).flip(1)                           # Σ_{j ≥ i}
    suffix_right = shift_right.flip(1).cumsum(1).flip(1)
    after = torch.cat([suffix_right[:, 1:], torch.zeros_like(suffix_right[:, :1])], dim=1)  # Σ_{j > i}

    substitute = grad - current[..., None]
    insert = grad - current[..., None] + after[..., None]
    delete = suffix_left

    size = lengths(rows)
    j = torch.arange(length, device=rows.device)[None]
    editable = j <= size[:, None]                                                 # every token and the append
    same = torch.nn.functional.one_hot(rows, vocabulary).bool()
    substitute = substitute.masked_fill(~editable[..., None] | same, float("-inf"))
    insert = insert.masked_fill(~editable[..., None] | (size[:, None, None] >= length), float("-inf"))
    insert[..., 0] = float("-inf")                                               # inserting padding is a no-op
    delete = delete.masked_fill(~(j < size[:, None]), float("-inf"))
    return torch.cat([substitute.reshape(n, -1), insert.reshape(n, -1), delete], dim=1)


def edit_of(flat: torch.Tensor, length: int, vocabulary: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(kind, position, token)`` of flat indices into :func:`first_order_scores`' layout."""
    block = length * vocabulary
    kind = torch.where(flat < block, SUBSTITUTE, torch.where(flat < 2 * block, INSERT, DELETE))
    within = torch.where(kind == DELETE, flat - 2 * block, flat % block)
    position = torch.where(kind == DELETE, within, within // vocabulary)
    token = torch.where(kind == DELETE, torch.zeros_like(within), within % vocabulary)
    return kind, position, token


def apply_edits(rows: torch.Tensor, kinds: torch.Tensor, positions: torch.Tensor, tokens: torch.Tensor
                ) -> torch.Tensor:
    """Several edits per row (``(n, k)`` each), applied right to left so that a shift never moves a position
    another edit of the same row refers to."""
    order = positions.argsort(dim=1, descending=True)
    kinds, positions, tokens = (t.gather(1, order) for t in (kinds, positions, tokens))
    for e in range(kinds.shape[1]):
        rows = apply_edit(rows, kinds[:, e], positions[:, e], tokens[:, e])
    return rows


def random_edits(rows: torch.Tensor, n_edits: torch.Tensor, vocabulary: int, generator: torch.Generator
                 ) -> torch.Tensor:
    """Each row with ``n_edits[i]`` uniformly random edits (kind, position within the row, token), as a
    mutation operator (STONED's, Nigam et al. 2021) draws them."""
    n, length = rows.shape
    k = int(n_edits.max()) if len(n_edits) else 0
    size = lengths(rows)
    kinds = torch.randint(0, 3, (n, k), generator=generator)
    positions = (torch.rand((n, k), generator=generator) * (size[:, None] + 1).float()).long()
    positions = positions.clamp(max=length - 1)
    tokens = torch.randint(1, vocabulary, (n, k), generator=generator)
    kinds = torch.where((kinds == DELETE) & (positions >= size[:, None]), SUBSTITUTE, kinds)
    kinds = torch.where((kinds == INSERT) & (size[:, None] >= length), SUBSTITUTE, kinds)
    unused = torch.arange(k)[None] >= n_edits[:, None]
    # An unused slot substitutes a position by its own token: no change.
    tokens = torch.where(unused, rows.gather(1, positions), tokens)
    kinds = torch.where(unused, SUBSTITUTE, kinds)
    return apply_edits(rows, kinds, positions, tokens)


def crossover(first: torch.Tensor, second: torch.Tensor, cut_first: torch.Tensor, cut_second: torch.Tensor
              ) -> torch.Tensor:
    """One-point crossover of token rows: ``first[:cut_first]`` followed by ``second[cut_second:]`` (its tokens
    before the padding), cut to the rows' width and padded. Any SELFIES string is a molecule, so every child is
    one: the genetic operator of SELFIES GAs (Nigam et al. 2020, *Augmenting Genetic Algorithms with Deep Neural
    Networks for Exploring the Chemical Space*, ICLR), here on whole batches."""
    n, length = first.shape
    t = torch.arange(length, device=first.device)[None]
    source = t - cut_first[:, None] + cut_second[:, None]       # where column t of the child reads ``second``
    tail = second.gather(1, source.clamp(0, length - 1))
    tail = torch.where(source < lengths(second)[:, None], tail, 0)
    return torch.where(t < cut_first[:, None], first, tail)


def random_crossovers(first: torch.Tensor, second: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """:func:`crossover` of each pair of rows at uniformly random cuts: after 1 … len(first) tokens of ``first``
    (at least one kept), from 0 … len(second) − 1 of ``second``."""
    size_first, size_second = lengths(first).clamp_min(1), lengths(second).clamp_min(1)
    cut_first = 1 + (torch.rand(len(first), generator=generator) * size_first).long().clamp(max=size_first - 1)
    cut_second = (torch.rand(len(second), generator=generator) * size_second).long().clamp(max=size_second - 1)
    return crossover(first, second, cut_first, cut_second)
