"""``--seeds``: a count expanded from ``--seed`` or a list; bad values refused in one line."""

import argparse

import pytest

from runners.cli import add_common_arguments, add_seeds_argument, expand_seeds, seeds_arg


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    add_seeds_argument(parser)
    args = parser.parse_args(list(argv))
    return expand_seeds(args.seeds, args.seed)


def test_a_count_starts_at_seed_a_list_is_kept_and_no_flag_is_just_seed():
    assert _parse("--seed", "4", "--seeds", "3") == (4, 5, 6)
    assert _parse("--seeds", "0,4,7") == (0, 4, 7)
    assert _parse("--seed", "2") == (2,)


@pytest.mark.parametrize("text, words", [("", "count or"), ("0", ">= 1"), ("-2", ">= 1"), ("1,-3", ">= 0"),
                                         ("1,1", "repeat"), ("a,b", "count or"), ("1,,2", "count or")])
def test_bad_seeds_are_refused_in_one_line(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words) as error:
        seeds_arg(text)
    assert "\n" not in str(error.value)


def test_the_cli_error_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        _parse("--seeds", "2,2")
    err = capsys.readouterr().err.strip().splitlines()
    assert "--seeds" in err[-1] and "repeat" in err[-1]
