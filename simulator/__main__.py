"""``python -m simulator simulate|stack ...``: the laptop side's own commands (``visual-search`` has them too)."""

from model.hub import main

raise SystemExit(main(package="simulator", prog="python -m simulator"))
