import pytest

from interpflow.positions import parse_positions


def test_names_and_expansion():
    pos = parse_positions(["last_prompt", "response[0..2]", "response_mean", "last_response"])
    assert [p.name for p in pos] == [
        "last_prompt",
        "response[0]",
        "response[1]",
        "response[2]",
        "response_mean",
        "last_response",
    ]


def test_token_indices():
    last_prompt, first, r3, last = parse_positions(
        ["last_prompt", "first_response", "response[3]", "last_response"]
    )
    assert last_prompt.token_index(10, 5) == 9
    assert first.token_index(10, 5) == 10
    assert r3.token_index(10, 5) == 13
    assert last.token_index(10, 5) == 14
    assert r3.token_index(10, 3) is None  # past the end of a short response
    assert first.token_index(10, 0) is None


def test_spans():
    pm, rm, sm = parse_positions(["prompt_mean", "response_mean", "sequence_mean"])
    assert pm.span(7, 4) == (0, 7)
    assert rm.span(7, 4) == (7, 11)
    assert rm.span(7, 0) is None
    assert sm.span(7, 4) == (0, 11)  # seed 002's mean over prompt + trace
    assert sm.span(7, 0) == (0, 7)


@pytest.mark.parametrize("bad", ["middle", "response[3..1]", "response[x]", "response[1"])
def test_bad_specs_name_the_spec(bad):
    with pytest.raises(ValueError, match="position"):
        parse_positions([bad])


def test_duplicates_rejected():
    with pytest.raises(ValueError, match="twice"):
        parse_positions(["response[0..1]", "first_response", "response[1]"])
