"""The shared vocabulary: the concept-name grammar, tokens and method names (``core.vocabulary``)."""

from __future__ import annotations

import pytest

from core import vocabulary
from core.vocabulary import InvalidConceptNameError, is_concept_name, prompt_tokens, slug_from, token_for


@pytest.mark.parametrize("name", ["dog", "a", "rex-2", "my_cat", "0", "x" * 32])
def test_slugs_are_concept_names(name: str) -> None:
    assert is_concept_name(name)
    assert token_for(name) == f"<{name}>"


@pytest.mark.parametrize("name", ["", "Dog", "-dog", "_dog", "x" * 33, "dog\n", "dog ", "d\u00f6g", "<dog>"])
def test_everything_else_is_refused(name: str) -> None:
    assert not is_concept_name(name)
    with pytest.raises(InvalidConceptNameError, match="must be a slug"):
        token_for(name)


def test_prompt_tokens_are_ordered_and_unique() -> None:
    assert prompt_tokens("<b> and <a> with <b>, <Not> or <>") == ["<b>", "<a>"]


def test_slug_from_free_text() -> None:
    assert slug_from("My Dog (2)") == "my-dog-2"
    with pytest.raises(InvalidConceptNameError):
        slug_from("???")


def test_the_engine_registry_has_one_method_per_name() -> None:
    from core.engine.methods import DEFAULT_METHOD, METHODS

    assert tuple(METHODS) == vocabulary.METHOD_NAMES
    assert DEFAULT_METHOD == vocabulary.DEFAULT_METHOD in METHODS
