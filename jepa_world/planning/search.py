"""Batched MuZero-style Monte-Carlo tree search over a learned latent model, for discrete actions.

Like the sampling planners, the search only sees callables: a latent transition ``step_fn``, a leaf value
``value_fn`` and optionally a policy prior ``prior_fn``. The caller closes over its models (and over per-episode goal
tensors ``[E, ...]``: row ``e`` of every call always belongs to tree / episode ``e``).

References:
    - MuZero (Schrittwieser et al., 2020): pUCT selection with ``c1 = 1.25`` and ``c2 = 19652``, Q values
      normalised by the minimum and maximum seen in the tree, discounted backup ``G = r + discount * G``, Dirichlet
      noise on the root prior (fraction 0.25), acting on the most visited root action.
    - AlphaZero (Silver et al., 2018): prior-weighted exploration bonus ``P * sqrt(N(s)) / (1 + N(s, a))``.
    - mctx (DeepMind's JAX tree-search library, 2022): many trees searched at once in preallocated arrays, and
      unvisited children valued at their parent's value (here: the parent's ``value_fn`` estimate, see ``MCTS``).

Shape conventions:
    E parallel trees (episodes), K discrete actions, N = 1 + num_simulations nodes per tree (node 0 is the root;
    every simulation adds at most one node), ``*L`` the latent shape (e.g. ``[D]`` or ``[P, D]``).
    ``step_fn(z # [E, *L], actions # [E] long) -> (z_next # [E, *L], reward # [E])``.
    ``value_fn(z # [E, *L]) -> # [E]``; ``prior_fn(z # [E, *L]) -> # [E, K]`` (rows are probabilities).
    Each simulation makes exactly one call of each (E rows); the root costs one extra ``value_fn`` and ``prior_fn``
    call. Statistics are float32; latents keep the root's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MCTS", "PriorFn", "SearchResult", "StepFn", "ValueFn", "discrete_headings"]

StepFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
ValueFn = Callable[[Tensor], Tensor]
PriorFn = Callable[[Tensor], Tensor]

_SPAN_EPS = 1e-8  # smallest min-max span used to normalise Q values


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------


def discrete_headings(num_headings: int = 8, step: float = 1.0, noop: bool = True) -> Tensor:
    """Displacement table of a discrete action set: ``num_headings`` unit headings scaled by ``step``, plus a no-op.

    Row ``k < num_headings`` is ``(cos, sin)(2 * pi * k / num_headings) * step`` (x = cos, y = sin); with ``noop`` a
    final zero row follows. Components below 1e-12 in magnitude (float rounding of ``cos(pi / 2)`` and the like) are
    set to exactly 0, so that e.g. a "straight down" move has no sideways component at all.

    Args:
        num_headings: Number of headings (>= 1).
        step: Length of every non-zero displacement (> 0).
        noop: Append the zero row.

    Returns:
        float32 ``# [K, 2]`` with ``K = num_headings + noop`` (9 by default).
    """
    if not isinstance(num_headings, int) or isinstance(num_headings, bool) or num_headings < 1:
        raise ValueError(f"num_headings must be an int >= 1, got {num_headings!r}")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a finite number > 0, got {step!r}")
    angles = 2.0 * math.pi * torch.arange(num_headings, dtype=torch.float64) / num_headings  # [num_headings]
    table = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)  # [num_headings, 2]
    table = torch.where(table.abs() < 1e-12, torch.zeros_like(table), table) * float(step)
    if noop:
        table = torch.cat([table, torch.zeros(1, 2, dtype=torch.float64)], dim=0)
    return table.to(torch.float32)


def _log_standard_gamma(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    """Log of Gamma(alpha, 1) samples, drawn with ``generator`` (Marsaglia and Tsang, 2000).

    For ``alpha < 1`` a Gamma(alpha + 1) sample is multiplied by ``U ** (1 / alpha)``; working in log space keeps
    tiny alphas (0.03 for AlphaZero's Go) from underflowing to an all-zero Dirichlet row.
    """
    a = alpha + 1.0 if alpha < 1.0 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.zeros(shape, dtype=torch.float32, device=device)
    done = torch.zeros(shape, dtype=torch.bool, device=device)
    while not bool(done.all()):
        x = torch.randn(shape, generator=generator, dtype=torch.float32, device=device)
        u = torch.rand(shape, generator=generator, dtype=torch.float32, device=device)
        v = (1.0 + c * x) ** 3
        log_v = torch.log(v.clamp_min(1e-30))
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x * x + d - d * v + d * log_v)
        out = torch.where(~done & ok, math.log(d) + log_v, out)
        done = done | ok
    if alpha < 1.0:
        u = torch.rand(shape, generator=generator, dtype=torch.float32, device=device)
        out = out + torch.log(u.clamp_min(1e-30)) / alpha
    return out


def _check_tensor(value: object, name: str, expected: tuple[int, ...], meaning: str) -> Tensor:
    """Raise unless ``value`` is a tensor of shape ``expected``; ``meaning`` names the dims (e.g. ``"[E, K]"``)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {expected} ({meaning}), got {type(value).__name__}")
    if tuple(value.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} ({meaning}), got {tuple(value.shape)}")
    return value


# ----------------------------------------------------------------------------------------------------------------------
# Search
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Output of ``MCTS.search``.

    Attributes:
        action: Chosen root action per tree ``# [E]`` long: the most visited, ties broken by the higher Q (then by
            the lower index).
        visit_counts: Visits of each root child ``# [E, K]`` float; each row sums to ``num_simulations``.
        q_values: Mean backed-up return through each root action ``# [E, K]``, ``r + discount * mean(G)``; 0 where
            the action was never tried.
        value: Root value estimate ``# [E]``: the visit-weighted mean of ``q_values``.
        policy: Visit distribution ``# [E, K]`` (``visit_counts`` normalised per row), e.g. a policy-learning target.
    """

    action: Tensor
    visit_counts: Tensor
    q_values: Tensor
    value: Tensor
    policy: Tensor


@dataclass(kw_only=True, eq=False)
class MCTS:
    """Batched MuZero-style tree search: E independent trees grown in lockstep, one node per tree and simulation.

    Selection at a node ``s`` takes ``argmax_a Qn(s, a) + P(s, a) * sqrt(N(s)) / (1 + N(s, a)) * (c_puct +
    log((N(s) + c_base + 1) / c_base))`` (ties to the lower index), where ``N(s)`` counts the node's own evaluation
    plus every visit through it, ``Q(s, a) = r(s, a) + discount * mean(G)`` over the returns backed up through the
    child, and ``Qn`` is ``Q`` min-max normalised to [0, 1] with the smallest and largest ``Q`` seen so far in that
    tree. An unvisited child is valued at its parent's own ``value_fn`` estimate (normalised the same way, clamped to
    [0, 1]) rather than at 0 in normalised units: a child that turned out worse than its parent's estimate yields to
    its untried siblings, and with an exact ``value_fn`` (so that no Q exceeds the parent's value) and a uniform
    prior the first K simulations at a node try every action once before any is repeated. With ``value_fn = 0``
    and non-negative rewards this coincides with MuZero's pessimistic choice.

    Selection stops at the first unexpanded child, which is then expanded (one ``step_fn``, one ``value_fn``, one
    ``prior_fn`` call for all trees) and its value backed up with ``G = r + discount * G`` to the root. A tree whose
    selection reaches an expanded node at depth ``max_depth`` expands nothing in that simulation: that node's own
    ``value_fn`` estimate is backed up again (its row in that simulation's calls is computed and discarded, so every
    call still has E rows).

    Attributes:
        num_actions: Number of discrete actions K (>= 2).
        num_simulations: Simulations per search (>= 1), i.e. at most that many expansions per tree.
        discount: Discount per step, in (0, 1].
        c_puct: Exploration constant (MuZero's c1, > 0).
        c_base: MuZero's c2 (> 0): the bonus grows by ``log((N + c_base + 1) / c_base)``, negligible for small N.
        max_depth: Maximum depth of an expanded node (>= 1); the root has depth 0.
        dirichlet_alpha: Concentration of the Dirichlet noise mixed into the root prior; 0 disables it (MuZero uses
            0.25 for Atari, 0.3 for chess).
        root_noise_fraction: Weight of that noise, in [0, 1].
    """

    num_actions: int
    num_simulations: int = 32
    discount: float = 0.97
    c_puct: float = 1.25
    c_base: float = 19652.0
    max_depth: int = 16
    dirichlet_alpha: float = 0.0
    root_noise_fraction: float = 0.25

    def __post_init__(self) -> None:
        for name, lo in (("num_actions", 2), ("num_simulations", 1), ("max_depth", 1)):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {val!r}")
        for name in ("discount", "c_puct", "c_base", "dirichlet_alpha", "root_noise_fraction"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ValueError(f"{name} must be a finite number, got {val!r}")
            setattr(self, name, float(val))
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if not self.c_puct > 0:
            raise ValueError(f"c_puct must be > 0, got {self.c_puct}")
        if not self.c_base > 0:
            raise ValueError(f"c_base must be > 0, got {self.c_base}")
        if self.dirichlet_alpha < 0:
            raise ValueError(f"dirichlet_alpha must be >= 0 (0 disables root noise), got {self.dirichlet_alpha}")
        if not 0.0 <= self.root_noise_fraction <= 1.0:
            raise ValueError(f"root_noise_fraction must be in [0, 1], got {self.root_noise_fraction}")

    # -- callables -----------------------------------------------------------------------------------------------------

    def _value(self, value_fn: ValueFn, z: Tensor) -> Tensor:
        e = z.shape[0]
        v = _check_tensor(value_fn(z), "value_fn(z)", (e,), "[E]")
        return v.detach().to(dtype=torch.float32, device=z.device)

    def _prior(self, prior_fn: PriorFn | None, z: Tensor) -> Tensor:
        e, k = z.shape[0], self.num_actions
        if prior_fn is None:
            return torch.full((e, k), 1.0 / k, dtype=torch.float32, device=z.device)
        p = _check_tensor(prior_fn(z), "prior_fn(z)", (e, k), "[E, K] with K = num_actions")
        return p.detach().to(dtype=torch.float32, device=z.device)

    def _step(self, step_fn: StepFn, z: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        out = step_fn(z, actions)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(
                f"step_fn must return a pair (z_next [E, *latent], reward [E]), got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
            )
        z_next = _check_tensor(out[0], "step_fn(z, a)[0] (z_next)", tuple(z.shape), "[E, *latent], as z")
        reward = _check_tensor(out[1], "step_fn(z, a)[1] (reward)", (z.shape[0],), "[E]")
        return z_next.detach(), reward.detach().to(dtype=torch.float32, device=z.device)

    # -- search --------------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def search(
        self,
        root: Tensor,
        *,
        step_fn: StepFn,
        value_fn: ValueFn,
        prior_fn: PriorFn | None = None,
        generator: torch.Generator | None = None,
    ) -> SearchResult:
        """Grow one tree per row of ``root`` and return the root statistics.

        Args:
            root: Root latents ``# [E, *L]`` (E >= 1).
            step_fn: ``(z # [E, *L], actions # [E] long) -> (z_next # [E, *L], reward # [E])``.
            value_fn: ``z # [E, *L] -> # [E]``, the value of a leaf (e.g. zeros for pure reward search).
            prior_fn: ``z # [E, *L] -> # [E, K]`` action probabilities, or None for a uniform prior.
            generator: Torch generator on ``root``'s device for the root Dirichlet noise (global RNG if None).

        Returns:
            The chosen action, root visit counts, Q values, value and visit policy of every tree.

        Raises:
            ValueError: For a root without a batch dim, or when a callable returns the wrong shape (the message names
                the expected and the returned shape).
        """
        if not isinstance(root, Tensor) or root.dim() < 1 or root.shape[0] < 1:
            got = tuple(root.shape) if isinstance(root, Tensor) else type(root).__name__
            raise ValueError(f"root must be a tensor of shape [E, *latent] with E >= 1, got {got}")
        e, k, n_sim, gamma = root.shape[0], self.num_actions, self.num_simulations, self.discount
        dev = root.device
        n = 1 + n_sim
        scratch = n  # slot written by trees that expand nothing in a simulation
        ar = torch.arange(e, device=dev)  # [E]
        f32 = {"dtype": torch.float32, "device": dev}

        children = torch.full((e, n + 1, k), -1, dtype=torch.long, device=dev)  # [E, N+1, K]
        parent = torch.full((e, n + 1), -1, dtype=torch.long, device=dev)  # [E, N+1]
        depth = torch.zeros((e, n + 1), dtype=torch.long, device=dev)  # [E, N+1]
        visits = torch.zeros((e, n + 1), **f32)  # [E, N+1]
        value_sum = torch.zeros((e, n + 1), **f32)  # [E, N+1]
        leaf_value = torch.zeros((e, n + 1), **f32)  # [E, N+1] value_fn at expansion
        reward = torch.zeros((e, n + 1), **f32)  # [E, N+1] reward of the edge into the node
        prior = torch.zeros((e, n + 1, k), **f32)  # [E, N+1, K]
        latents = torch.zeros((e, n + 1, *root.shape[1:]), dtype=root.dtype, device=dev)  # [E, N+1, *L]
        num_nodes = torch.ones(e, dtype=torch.long, device=dev)  # [E]
        q_lo = torch.full((e,), math.inf, **f32)  # [E] smallest Q seen per tree
        q_hi = torch.full((e,), -math.inf, **f32)  # [E] largest Q seen per tree

        # Root: evaluated once, counted as one visit.
        latents[:, 0] = root
        v_root = self._value(value_fn, root)  # [E]
        p_root = self._prior(prior_fn, root)  # [E, K]
        if self.dirichlet_alpha > 0 and self.root_noise_fraction > 0:
            noise = torch.softmax(_log_standard_gamma(self.dirichlet_alpha, (e, k), generator, dev), dim=-1)
            p_root = (1.0 - self.root_noise_fraction) * p_root + self.root_noise_fraction * noise
        prior[:, 0] = p_root
        leaf_value[:, 0] = v_root
        value_sum[:, 0] = v_root
        visits[:, 0] = 1.0

        def scores(node: Tensor) -> Tensor:
            """pUCT score of every action at ``node`` # [E] -> # [E, K]."""
            ch = children[ar, node]  # [E, K]
            has = ch >= 0
            chi = ch.clamp_min(0)
            rows = ar[:, None]
            n_child = torch.where(has, visits[rows, chi], 0.0)  # [E, K]
            q_child = reward[rows, chi] + gamma * value_sum[rows, chi] / visits[rows, chi].clamp_min(1.0)  # [E, K]
            n_parent = visits[ar, node]  # [E]
            q = torch.where(n_child > 0, q_child, leaf_value[ar, node][:, None])  # [E, K]
            seen = (q_hi >= q_lo)[:, None]  # [E, 1]
            span = (q_hi - q_lo).clamp_min(_SPAN_EPS)[:, None]
            qn = torch.where(seen, ((q - q_lo[:, None]) / span).clamp(0.0, 1.0), 0.0)  # [E, K]
            c = self.c_puct + torch.log((n_parent + self.c_base + 1.0) / self.c_base)  # [E]
            bonus = prior[ar, node] * (n_parent.sqrt() * c)[:, None] / (1.0 + n_child)  # [E, K]
            return qn + bonus

        for _ in range(n_sim):
            # Selection: descend every tree through expanded nodes until an unexpanded child (or max_depth).
            node = torch.zeros(e, dtype=torch.long, device=dev)  # [E]
            leaf_parent = torch.zeros(e, dtype=torch.long, device=dev)  # [E]
            leaf_action = torch.zeros(e, dtype=torch.long, device=dev)  # [E]
            searching = torch.ones(e, dtype=torch.bool, device=dev)  # [E]
            for _ in range(self.max_depth):
                a = scores(node).argmax(dim=-1)  # [E]
                child = children[ar, node, a]  # [E]
                found = searching & (child < 0)
                leaf_parent = torch.where(found, node, leaf_parent)
                leaf_action = torch.where(found, a, leaf_action)
                searching = searching & ~found
                node = torch.where(searching, child, node)
                if not bool(searching.any()):
                    break
            expand = ~searching  # [E]; the others stopped at an expanded node at depth max_depth
            leaf_parent = torch.where(expand, leaf_parent, node)

            # Expansion: one call of each callable, E rows; rows of trees that expand nothing are discarded.
            z_next, r = self._step(step_fn, latents[ar, leaf_parent], leaf_action)  # [E, *L], [E]
            v = self._value(value_fn, z_next)  # [E]
            p = self._prior(prior_fn, z_next)  # [E, K]
            slot = torch.where(expand, num_nodes, scratch)  # [E]
            latents[ar, slot] = z_next.to(latents.dtype)
            reward[ar, slot] = r
            prior[ar, slot] = p
            leaf_value[ar, slot] = v
            parent[ar, slot] = leaf_parent
            depth[ar, slot] = depth[ar, leaf_parent] + 1
            old = children[ar, leaf_parent, leaf_action]
            children[ar, leaf_parent, leaf_action] = torch.where(expand, num_nodes, old)
            leaf = torch.where(expand, num_nodes, node)  # [E]
            num_nodes = num_nodes + expand.long()

            # Backup: G = r + discount * G from the leaf to the root; paths differ in length, so mask per tree.
            g = leaf_value[ar, leaf]  # [E]
            cur = leaf
            for _ in range(int(depth[ar, leaf].max()) + 1):
                on = cur >= 0  # [E]
                idx = cur.clamp_min(0)
                value_sum[ar, idx] += torch.where(on, g, 0.0)
                visits[ar, idx] += on.float()
                r_in = reward[ar, idx]
                q_edge = r_in + gamma * value_sum[ar, idx] / visits[ar, idx].clamp_min(1.0)  # [E]
                upd = on & (idx != 0)  # the root has no incoming edge
                q_lo = torch.where(upd, torch.minimum(q_lo, q_edge), q_lo)
                q_hi = torch.where(upd, torch.maximum(q_hi, q_edge), q_hi)
                g = r_in + gamma * g
                cur = torch.where(on, parent[ar, idx], cur)

        # Root statistics.
        ch = children[:, 0]  # [E, K]
        has = ch >= 0
        chi = ch.clamp_min(0)
        rows = ar[:, None]
        counts = torch.where(has, visits[rows, chi], 0.0)  # [E, K]
        q = torch.where(
            counts > 0, reward[rows, chi] + gamma * value_sum[rows, chi] / visits[rows, chi].clamp_min(1.0), 0.0
        )  # [E, K]
        total = counts.sum(dim=-1)  # [E] = num_simulations
        policy = counts / total[:, None]
        value = (counts * q).sum(dim=-1) / total
        most = counts == counts.max(dim=-1, keepdim=True).values  # [E, K]
        action = torch.where(most, q, -math.inf).argmax(dim=-1)  # [E]
        return SearchResult(action=action, visit_counts=counts, q_values=q, value=value, policy=policy)
