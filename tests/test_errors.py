"""The error contract's helpers: first_line and warn."""

from __future__ import annotations

import warnings

import pytest

from fcnkit.errors import FcnkitWarning, first_line, warn


@pytest.mark.parametrize("exc, expected", [
    (ValueError(""), "ValueError"),             # empty text: the type's name
    (OSError(), "OSError"),
    (ValueError("  \n \n"), "ValueError"),     # only white space
    (ValueError("\n  cause here  \nmore"), "cause here"),
    (KeyError("k"), "'k'"),
])
def test_first_line_of_any_message(exc, expected):
    assert first_line(exc) == expected


def test_warn_is_an_fcnkit_warning_attributed_to_the_caller():
    def library_function():
        warn("a note")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library_function()
    (record,) = caught
    assert record.category is FcnkitWarning and str(record.message) == "a note"
    assert record.filename == __file__
