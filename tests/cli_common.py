"""The one assertion every command-line error test makes: a bad input is one line."""

from __future__ import annotations


def assert_one_line_error(rc: int, out: str, err: str, message: str, argv=None) -> None:
    """Exit status 2, nothing on stdout, exactly one ``error: ...`` line on stderr that
    contains `message`, and no traceback."""
    assert rc == 2, (argv, out, err)
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message in err, (message, err)
