"""`rade validate` and `rade schema`: check job files without a cluster, and describe their format.

`rade validate JOB.yaml...` checks every file (with any `--set` options applied to each) and lists every
problem of every file, one a line, exiting 2 if there was any; `--print` shows each valid spec in full,
defaults included, as the scheduler would receive it. `rade schema` prints the JSON Schema for editors.
"""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser(
        "validate", help="check job files and list every problem",
        description="Check job YAML files; print every problem as FILE:LINE:COL: field: what to fix.")
    validate.add_argument("files", nargs="+", metavar="JOB.yaml", help="job files to check ('-': standard input)")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="change a field before checking, e.g. --set resources.memory=4G (repeatable)")
    validate.add_argument("--print", dest="show", action="store_true",
                          help="print each valid spec in full, defaults included, as YAML")
    validate.set_defaults(func=run_validate)

    schema = subparsers.add_parser("schema", help="print the JSON Schema of job files",
                                   description="Print the JSON Schema (draft 2020-12) of job YAML files.")
    schema.set_defaults(func=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    from jobs.errors import EXIT_USAGE
    from jobs.loader import load_spec, parse_spec
    from jobs.problems import SpecError
    from jobs.spec import spec_to_yaml

    failed = False
    for path in args.files:
        try:
            if path == "-":
                # Relative volumes in a piped spec start where the command runs.
                spec = parse_spec(sys.stdin.read(), "<stdin>", args.overrides, base_dir=os.getcwd())
            else:
                spec = load_spec(path, args.overrides)
        except SpecError as err:
            failed = True
            for problem in err.problems:
                sys.stderr.write(f"{problem}\n")
            continue
        if args.show:
            if len(args.files) > 1:
                sys.stdout.write(f"--- # {path}\n")
            sys.stdout.write(spec_to_yaml(spec))
        else:
            sys.stdout.write(f"{path}: valid\n")
    return EXIT_USAGE if failed else 0


def run_schema(args: argparse.Namespace) -> int:
    from jobs.schema import job_schema_text

    sys.stdout.write(job_schema_text())
    return 0
