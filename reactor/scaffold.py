"""``reactor init NAME``: a new model's folder with a model, a config and a README."""

from __future__ import annotations

import re
from pathlib import Path

from reactor import __distribution__, __version__
from reactor.errors import ReactorError

_MODEL = '''"""{title}: a reactor model. Edit start_session and the commands."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from reactor import Field, Session, VideoModel, command


class {cls}(VideoModel):
    """Draws a moving gradient and tints it; commands set the tint's strength and colour.

    To tint the camera instead, loop over ``session.inputs()`` and emit
    ``self._tint(frame)`` (the getting-started guide walks through it).
    """

    def load(self, config: dict[str, Any]) -> None:
        # Runs once when the daemon starts: load weights here.
        self.strength = float(config.get("strength", 0.5))
        self.color: str = "blue"
        # Frame buffers, made once per frame size: allocating a 720p frame or two on
        # every frame would cost more than the tint itself.
        self._work = np.empty(0, dtype=np.float32)
        self._out = np.empty(0, dtype=np.uint8)

    @command
    def set_strength(self, strength: float = Field(0.5, ge=0.0, le=1.0)) -> None:
        """How strongly to tint the picture."""
        self.strength = strength

    @command
    def set_color(self, color: Literal["red", "green", "blue"] = "blue") -> None:
        """The tint colour."""
        self.color = color

    def _tint(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` mixed with the tint colour, in a buffer reused every frame."""
        if self._out.shape != frame.shape:
            self._work = np.empty(frame.shape, dtype=np.float32)
            self._out = np.empty(frame.shape, dtype=np.uint8)
        channel = {{"red": 0, "green": 1, "blue": 2}}[self.color]
        np.multiply(frame, 1.0 - self.strength, out=self._work)
        self._work[..., channel] += 255.0 * self.strength
        np.copyto(self._out, self._work, casting="unsafe")
        return self._out

    def start_session(self, session: Session) -> None:
        # Runs once per client session; emit frames until the session stops.
        x = np.linspace(0, 255, session.width, dtype=np.float32)
        row = np.empty_like(x)
        gradient = np.empty((session.height, session.width, 3), dtype=np.uint8)
        t = 0
        while not session.should_stop():
            np.mod(x + t, 256, out=row)
            gradient[:] = row[None, :, None]  # every row and channel: the same ramp
            session.emit(self._tint(gradient))
            t += 4
'''

_CONFIG = """# reactor config for {name}. Check it with: reactor config check {name}/reactor.yaml
model:
  module: model:{cls}      # model.py in this folder, class {cls}
  args:
    strength: 0.5
video:
  width: 1280
  height: 720
  fps: 30
server:
  host: 127.0.0.1
  port: 8081
"""

_README = """# {title}

A [reactor](https://pypi.org/project/{distribution}/) model.

    pip install -r {name}/requirements.txt
    reactor config check --load {name}/reactor.yaml   # validate the config, load the model
    reactor schema -c {name}/reactor.yaml      # the commands clients can send
    reactor daemon start -c {name}/reactor.yaml
    # open http://127.0.0.1:8081/ and watch; move the sliders
    reactor send set_strength strength=0.9
    reactor daemon stop

Edit `model.py`: `load()` runs once, `start_session()` once per client session, and each
`@command` method becomes a control in the web page.

Test it without a daemon (`test_model.py` runs the model in-process with
`reactor.testing.ModelRunner`; `python -m pytest {name}` runs it too, if you use pytest):

    python {name}/test_model.py
"""

_REQUIREMENTS = """# What {name} needs: pip install -r {name}/requirements.txt
{distribution}>={version}
numpy
"""

_TEST = '''from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from model import {cls}  # noqa: E402

from reactor.testing import ModelRunner  # noqa: E402


def test_emits_frames_and_obeys_commands() -> None:
    runner = ModelRunner({cls}, width=64, height=48)
    frames = runner.run(frames=4, commands={{2: ("set_color", {{"color": "red"}})}})
    assert len(frames) == 4
    assert frames[3][..., 0].mean() > frames[1][..., 0].mean()


if __name__ == "__main__":  # python test_model.py: runs every test_ function, no pytest needed
    tests = [f for name, f in sorted(globals().items()) if name.startswith("test_")]
    for test in tests:
        test()
    print(f"passed: {{len(tests)}} of {{len(tests)}} tests")
'''


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\-]+", name) if part) or "Model"


def scaffold(name: str, parent: Path | None = None) -> Path:
    """Create ``NAME/`` with ``model.py``, ``reactor.yaml``, ``README.md``,
    ``requirements.txt`` (reactor's distribution, at least this version, and numpy) and a
    test."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", name):
        raise ReactorError(
            f"init: {name!r} is not a usable name: use letters, digits, '_' or '-', "
            "starting with a letter"
        )
    root = (parent or Path.cwd()) / name
    if root.exists():
        raise ReactorError(f"init: {root} already exists; choose another name or remove it")
    cls = class_name(name)
    fill = {
        "name": name,
        "cls": cls,
        "title": name.replace("_", " ").replace("-", " ").title(),
        "distribution": __distribution__,
        "version": __version__,
    }
    root.mkdir(parents=True)
    (root / "model.py").write_text(_MODEL.format(**fill))
    (root / "reactor.yaml").write_text(_CONFIG.format(**fill))
    (root / "README.md").write_text(_README.format(**fill))
    (root / "requirements.txt").write_text(_REQUIREMENTS.format(**fill))
    (root / "test_model.py").write_text(_TEST.format(**fill))
    return root
