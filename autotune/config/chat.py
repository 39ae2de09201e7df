"""Chat workloads: conversations rendered with the model's own chat template, as serving stacks render them.

A prompt file may hold `{"messages": [{"role": ..., "content": ...}, ...]}` lines. Each conversation becomes
the text its model's tokenizer renders (`apply_chat_template`, generation prompt added), so every later step
(trials, the memory model, a preset's record) handles plain prompt text. The text is chosen so that the
tokenizer, called on it as the worker calls it, gives exactly the ids `apply_chat_template` gives: where the
tokenizer adds its own BOS token, the template's leading BOS text is left out.
"""

from __future__ import annotations

from pathlib import Path

from autotune.errors import WorkloadError

FIX = 'give {"prompt": ...} lines instead'


def check_messages(messages, where: str) -> tuple[dict, ...]:
    """The conversation of one prompt-file line, validated: a non-empty list of {"role", "content"} strings.

    Args:
        messages: the line's "messages" value.
        where: "FILE:LINE", for the error.

    Returns:
        The messages as a tuple of dicts holding only "role" and "content".
    """
    if not isinstance(messages, list) or not messages:
        raise WorkloadError(f'{where}: "messages" must be a non-empty list of {{"role": ..., "content": ...}}')
    checked = []
    for index, message in enumerate(messages):
        if (not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"]
                or not isinstance(message.get("content"), str)):
            raise WorkloadError(f'{where}: message {index + 1} must be an object with string "role" and "content"')
        checked.append({"role": message["role"], "content": message["content"]})
    return tuple(checked)


def chat_tokenizer(model: str | None, source: str):
    """The tokenizer whose chat template renders `source`'s conversations: the model folder's, or a hub id's
    from the local cache. WorkloadError where there is none, or it has no chat template."""
    if not model:
        raise WorkloadError(f"{source} holds chat messages, which are rendered with the model's chat template: "
                            "give --model, or " + FIX)
    if model.startswith("random:"):
        raise WorkloadError(f"{source} holds chat messages, and random-weight models have no chat template: {FIX}")
    path = Path(model).expanduser()
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else model, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loading failure is the same input problem
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkloadError(f"{source} holds chat messages, but the tokenizer of {model} does not load ({reason}): "
                            f"give a model folder with a tokenizer, or {FIX}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise WorkloadError(f"{source} holds chat messages, but the tokenizer of {model} has no chat template: {FIX}")
    return tokenizer


def render_conversations(model: str | None, conversations, source: str) -> tuple[str, ...]:
    """Each conversation as its model renders it for a reply (`add_generation_prompt=True`).

    Args:
        model: the model folder or hub id whose tokenizer holds the chat template.
        conversations: tuples of {"role", "content"} messages (`check_messages`).
        source: the prompt file, for errors.

    Returns:
        The prompt texts, one per conversation; the tokenizer gives each exactly the template's ids.
    """
    tokenizer = chat_tokenizer(model, source)
    return tuple(render_one(tokenizer, list(messages), f"{source}: conversation {number}")
                 for number, messages in enumerate(conversations, start=1))


def render_one(tokenizer, messages: list[dict], where: str) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    except Exception as exc:  # noqa: BLE001 - a template that rejects the messages (roles, order) says why
        raise WorkloadError(f"{where}: the chat template rejects it ({str(exc).strip()[:200]})") from None
    ids = list(ids["input_ids"] if not isinstance(ids, list) else ids)
    for candidate in (text, without_bos(tokenizer, text)):
        if candidate and tokenizer(candidate)["input_ids"] == ids:
            return candidate
    raise WorkloadError(f"{where}: the chat template's text does not tokenize back to the template's tokens, so "
                        f"it cannot be measured as rendered: {FIX}")


def without_bos(tokenizer, text: str) -> str:
    """`text` without a leading BOS token text, which a tokenizer that adds BOS itself would double."""
    bos = getattr(tokenizer, "bos_token", None)
    return text[len(bos):] if bos and text.startswith(bos) else text
