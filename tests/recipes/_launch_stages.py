"""Run several rewardlab commands one after another in one launched process group.

`accelerate launch ... tests/recipes/_launch_stages.py COMMANDS.json`: each entry of the JSON list is one
command's arguments, run in-process through the CLI as `rewardlab` would run it, so one launch (DeepSpeed's
import, the process group, the op build) serves several stages. Exits non-zero naming the first command that
failed. Used by tests/recipes/test_sharded_trl.py and test_distributed_trl.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rewardlab.cli import app


def main() -> None:
    for args in json.loads(Path(sys.argv[1]).read_text()):
        try:
            code = app([str(a) for a in args], standalone_mode=False)
        except SystemExit as stop:
            code = stop.code
        if code not in (0, None):
            raise SystemExit(f"rewardlab {' '.join(args[:2])} exited {code}")


if __name__ == "__main__":
    main()
