"""Generate docs/asyncapi.json from the real FastStream app, with default settings.

    python scripts/asyncapi.py          # write the file
    python scripts/asyncapi.py --check  # exit 1 if the file is not current
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUTPUT = ROOT / "docs" / "asyncapi.json"


def render() -> str:
    from worker.runtime import Worker
    from worker.settings import ENV_PREFIX, Settings

    # The document describes the defaults, whatever this shell's environment says.
    clean_env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    with mock.patch.dict(os.environ, clean_env, clear=True):
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
    app = Worker(settings).create_app()
    document = app.schema.to_specification().to_jsonable()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date; run: python scripts/asyncapi.py", file=sys.stderr)
            sys.exit(1)
        return
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
