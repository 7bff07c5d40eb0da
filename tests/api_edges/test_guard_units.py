"""The request guard's byte scans, as pure functions (no server)."""

from __future__ import annotations

import json

from hookline.api.guard import MAX_JSON_DEPTH, has_nul, is_json, json_nesting_problem


def test_shallow_bodies_pass_without_the_exact_scan() -> None:
    assert json_nesting_problem(b'{"a": [1, 2, {"b": null}]}') is None
    # many brackets side by side are not depth: a 1000-item array of objects passes
    many = json.dumps([{"x": [i]} for i in range(1000)]).encode()
    assert json_nesting_problem(many) is None


def test_depth_is_measured_exactly_at_the_limit() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    over = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    assert json_nesting_problem(at_limit) is None
    problem = json_nesting_problem(over)
    assert problem is not None and "deeper" in problem
    mixed = ('{"a":' * 600 + "[" * 600 + "1" + "]" * 600 + "}" * 600).encode()
    assert json_nesting_problem(mixed) is not None


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"note": "[" * 5000 + '\\"{' * 100}).encode()
    assert json_nesting_problem(text) is None


def test_unclosed_brackets_are_refused_before_a_parser_recurses_into_them() -> None:
    assert json_nesting_problem(b"[" * 5000) is not None


def test_nul_escapes_are_found_but_an_escaped_backslash_is_not_one() -> None:
    assert has_nul(json.dumps({"name": "a\x00b"}).encode())
    assert has_nul(b'{"name": "a\\\\\\u0000"}')  # \\ then \u0000
    assert not has_nul(json.dumps({"name": "a\\u0000b"}).encode())  # literal backslash-u
    assert not has_nul(b'{"name": "plain"}')


def test_json_media_types() -> None:
    assert is_json(b"application/json")
    assert is_json(b"Application/JSON; charset=utf-8")
    assert is_json(b"application/merge-patch+json")
    assert not is_json(b"text/plain")
    assert not is_json(b"application/x-www-form-urlencoded")
    assert not is_json(b"text/json+html")
