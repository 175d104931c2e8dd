"""``make mutation``: mutmut over the critical modules, each with its own targeted tests.

``python -m tests.mutation [NAME ...]`` (all when none is named). Each module is mutated in its own copy of the
tree under ``.mutation/<name>/`` (its own ``[tool.mutmut]``: the module, and the tests that specify it), at
``nice 15`` with one test process: the machine is shared. Prints one table row per module (mutants, killed,
survived, score = killed / (killed + survived), timeouts counted as killed) and the survivors by name
(``cd .mutation/<name> && mutmut show <survivor>`` prints the diff); writes ``test-artifacts/mutation.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".mutation"
PACKAGES = ("model", "edge_component", "cloud_lambda", "simulator", "tests")
TARGET = 0.85


@dataclass(frozen=True)
class Module:
    source: str
    tests: tuple[str, ...]
    """The targeted tests: the module's specification."""
    before: tuple[str, ...] = ()
    """The tests that covered it before issue 13 (``--baseline`` measures them, for the before/after table)."""


MODULES = {
    "wire": Module(
        "model/contracts/wire.py",
        (
            "tests/hardening/test_wire_fuzz.py",
            "tests/hardening/test_wire_contract.py",
            "tests/model/contracts/test_wire.py",
        ),
    ),
    "matches": Module(
        "cloud_lambda/matches.py",
        (
            "tests/hardening/test_match_store.py",
            "tests/hardening/test_device_keys.py",
            "tests/hardening/test_json_bounds.py",
        ),
    ),
    "bridge": Module(
        "simulator/stack/bridge.py", ("tests/hardening/test_bridge_acks.py", "tests/simulator/test_bridge.py")
    ),
    "spool": Module("simulator/stack/spool.py", ("tests/simulator/test_spool.py",)),
    "service": Module(
        "cloud_lambda/search/service.py",
        (
            "tests/hardening/test_service_validation.py",
            "tests/cloud_lambda/test_search_service.py",
            "tests/hardening/test_lower_items.py",
            "tests/hardening/test_record_size.py",
            "tests/hardening/test_json_bounds.py",
        ),
        ("tests/cloud_lambda/test_search_service.py",),
    ),
    "bounded_json": Module("model/contracts/bounded_json.py", ("tests/hardening/test_json_bounds.py",)),
    "thing_name": Module("model/contracts/thing_name.py", ("tests/hardening/test_thing_names.py",)),
}


def prepare(name: str, module: Module, baseline: bool = False) -> Path:
    """A fresh copy of the tree whose pyproject mutates ``module`` only, with its tests."""
    root = WORK / (name + ("-baseline" if baseline else ""))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    tests = [t for t in (module.before if baseline else module.tests) if (REPO / t).exists()]
    config = {
        "source_paths": [module.source.split("/")[0]],
        "only_mutate": [module.source],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q", "-m", "not gpu", "--timeout", "300"],
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    text = (REPO / "pyproject.toml").read_text() + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n"
    (root / "pyproject.toml").write_text(text)
    return root


def run(name: str, module: Module, baseline: bool = False) -> dict[str, object]:
    root = prepare(name, module, baseline)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    log = root / "mutmut.log"
    with open(log, "wb") as out:
        subprocess.run(["nice", "-n", "15", mutmut, "run", "--max-children", "1"], cwd=root, stdout=out, stderr=out)
    subprocess.run([mutmut, "export-cicd-stats"], cwd=root, capture_output=True)
    stats = json.loads((root / "mutants" / "mutmut-cicd-stats.json").read_text())
    results = subprocess.run([mutmut, "results"], cwd=root, capture_output=True, text=True).stdout
    survivors = sorted(line.split(":")[0].strip() for line in results.splitlines() if line.strip().endswith("survived"))
    killed = int(stats["killed"]) + int(stats["timeout"])
    checked = killed + int(stats["survived"])
    return {
        "module": module.source,
        "tests": [t for t in (module.before if baseline else module.tests) if (REPO / t).exists()],
        "mutants": int(stats["total"]),
        "killed": killed,
        "survived": int(stats["survived"]),
        "no_tests": int(stats["no_tests"]),
        "score": round(killed / checked, 3) if checked else None,
        "survivors": survivors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"modules (default: all): {', '.join(MODULES)}")
    parser.add_argument("--baseline", action="store_true", help="score with the tests that existed before issue 13")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    names = args.names or list(MODULES)
    names = [n for n in names if not args.baseline or MODULES[n].before]
    rows = [
        run(name, MODULES[name], args.baseline) | {"name": name + (" (before)" if args.baseline else "")}
        for name in names
    ]
    print("\n| module | mutants | killed | survived | no tests | score |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        score = f"{row['score']:.0%}" if row["score"] is not None else "-"
        print(
            f"| {row['module']} | {row['mutants']} | {row['killed']} | {row['survived']} | {row['no_tests']} | {score} |"
        )
    for row in rows:
        for survivor in row["survivors"]:  # type: ignore[attr-defined]
            print(f"  survived: {survivor}")
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    previous = json.loads((out / "mutation.json").read_text()) if (out / "mutation.json").exists() else {}
    (out / "mutation.json").write_text(json.dumps(previous | {row["name"]: row for row in rows}, indent=2))
    low = [row["name"] for row in rows if row["score"] is not None and row["score"] < TARGET]
    if low:
        print(f"below {TARGET:.0%}: {', '.join(map(str, low))}")
    return 1 if low and not args.baseline else 0


if __name__ == "__main__":
    raise SystemExit(main())
