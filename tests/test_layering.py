"""The package map of docs/architecture.md, checked: which sub-package of
povstorm may import which, and that povstorm never imports the local stack
(povstorm_local plugs in through an entry point instead)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "client" / "povstorm"

# sub-package -> the sub-packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "povray": {"core"},
    "ledger": {"core"},
    "cloud": {"core"},
    "farm": {"core", "ledger", "cloud"},
    "worker": {"core", "povray", "ledger", "cloud", "stitch"},
    "stitch": {"core", "ledger", "cloud"},
    "shells": {"core", "ledger", "cloud", "farm", "worker", "stitch"},
    # ui: only cli.py's `povstorm ui`, which imports it when the command runs
    "client": {"core", "povray", "ledger", "cloud", "farm", "stitch", "ui"},
    "ui": {"core", "cloud", "client"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a file, TYPE_CHECKING ones included."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_every_sub_package_is_in_the_map() -> None:
    subs = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert subs == set(ALLOWED)


def test_sub_packages_import_only_what_the_map_allows() -> None:
    wrong = []
    for sub, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / sub).rglob("*.py")):
            for line, module in imports_of(path):
                parts = module.split(".")
                if parts[0] == "povstorm_local":
                    wrong.append(f"{path.relative_to(REPO)}:{line} imports the local stack")
                elif parts[0] == "povstorm" and len(parts) > 1:
                    target = parts[1]
                    if target != sub and target not in allowed:
                        wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert wrong == []


def test_the_client_works_without_the_local_stack(tmp_path: Path) -> None:
    """With povstorm_local unimportable, `povstorm --help` still works (no `local`
    subcommand) and Cluster.local() says in one line what is missing."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["povstorm_local"] = None  # makes any import of it fail
        from importlib import metadata
        real = metadata.entry_points
        metadata.entry_points = lambda **kw: [] if kw.get("group") == "povstorm.stacks" else real(**kw)
        import povstorm.client.stacks as stacks
        stacks.entry_points = metadata.entry_points
        from povstorm.client import Cluster
        from povstorm.client.cli import build_parser
        from povstorm.core.errors import StackError
        help_text = build_parser().format_help()
        commands = [line.split()[0] for line in help_text.splitlines() if line.startswith("    ")]
        assert "render" in commands and "local" not in commands, commands
        try:
            Cluster.local(start=False)
        except StackError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.startswith("no local stack is installed"), out.stdout + out.stderr


def test_the_local_stack_is_found_through_its_entry_point() -> None:
    from povstorm.client import stacks

    plugin = stacks.find("local")
    assert plugin is not None
    assert type(plugin).__module__ == "povstorm_local.plugin"
