"""A JupyterLab server for the browser tests, and what a test does in its pages: open a
notebook, run all its cells, wait until the kernel and the page settle, take screenshots, and
keep what the browser console says."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# JupyterLab settings of the test server: no news or update toast over the notebook, no
# autosave, every cell in the page (the widgets sit in the last one).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class JupyterLab:
    """`jupyter lab` of this interpreter, serving `folder/root` on 127.0.0.1 with a token; its
    own config, data and runtime folders under `folder`, so that no user setting, kernel spec
    or workspace of this machine changes what the tests see."""

    process: subprocess.Popen
    url: str
    token: str
    log: Path

    @classmethod
    def start(cls, folder: Path, params_file: Path, timeout: float = 120) -> JupyterLab:
        config = folder / "config"
        for name, settings in LAB_SETTINGS.items():
            path = config / "lab" / "user-settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))
        port, token = free_port(), secrets.token_hex(16)
        environment = {
            **os.environ,
            "TEACHABLE_PARAMS": str(params_file),
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(folder / "data"),
            "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
            "JUPYTER_PREFER_ENV_PATH": "1",
        }
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={folder / 'root'}",
            f"--IdentityProvider.token={token}",
            "--ServerApp.port_retries=0",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        log = folder / "jupyter-lab.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                command, env=environment, stdout=sink, stderr=subprocess.STDOUT
            )
        server = cls(process, f"http://127.0.0.1:{port}", token, log)
        server.wait_ready(timeout)
        return server

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.api("status"), timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer in {timeout} s:\n{self.log.read_text()}")

    def api(self, path: str) -> str:
        return f"{self.url}/api/{path}?token={self.token}"

    def notebook_url(self, path: str) -> str:
        """The notebook alone in a workspace of its own, so that no tab left open by an
        earlier page comes back and takes the focus."""
        workspace = f"test-{secrets.token_hex(4)}"
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class ConsoleLog:
    """Every message of the page's console, and the errors among them (console errors and
    uncaught exceptions)."""

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, page) -> ConsoleLog:
        log = cls()
        page.on("console", log._on_console)
        page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))
        return log

    def _on_console(self, message) -> None:
        line = f"{message.type}: {message.text}"
        self.messages.append(line)
        if message.type == "error":
            self.errors.append(line)


@dataclass
class Shots:
    """Numbered screenshots of a test's steps, in its own folder."""

    folder: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, target, step: str) -> Path:
        """Screenshot a page or a locator as `NN-step.png`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        if hasattr(target, "scroll_into_view_if_needed"):
            target.scroll_into_view_if_needed()
        target.screenshot(path=str(path))
        self.taken.append(path)
        return path


def open_notebook(page, lab: JupyterLab, path: str) -> None:
    """Open the notebook with the left sidebar closed (the widgets get the page's width) and
    wait for its kernel to be idle."""
    page.goto(lab.notebook_url(path))
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    if page.locator("#jp-left-stack").is_visible():
        page.keyboard.press("Control+b")  # View > Show Left Sidebar
        page.locator("#jp-left-stack").wait_for(state="hidden")
    wait_for_kernel_idle(page)


def wait_for_kernel_idle(page, timeout: float = 120_000) -> None:
    page.locator("#jp-main-statusbar").get_by_text("| Idle").wait_for(timeout=timeout)


def kernel_idle(page) -> bool:
    return page.locator("#jp-main-statusbar").get_by_text("| Idle").count() > 0


def run_all_cells(page) -> None:
    """Run > Run All Cells, as a reader does."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def wait_for_widget(page, locator, timeout: float = 300, grace: float = 15) -> None:
    """Wait until the widget shows. Stop early, with what the page shows instead, when a cell
    fails or when every cell has run and the widget is still not drawn `grace` seconds later
    (no widget front-end: the cell shows the widget's text, `VBox(children=...)`)."""
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    last_cell = page.locator(".jp-CodeCell").last
    deadline, all_ran = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if locator.count() and locator.first.is_visible():
            return
        failed = [text for text in errors.all_inner_texts() if "Traceback" in text]
        if failed:
            raise AssertionError(f"a cell failed before the widget showed:\n{failed[0]}")
        ran = re.fullmatch(r"\[\d+\]:", last_cell.locator(".jp-InputPrompt").inner_text().strip())
        if ran and kernel_idle(page):
            all_ran = all_ran or time.monotonic()
            if time.monotonic() - all_ran > grace:
                shown = last_cell.locator(".jp-OutputArea").inner_text()
                raise AssertionError(f"every cell ran, but no widget is drawn; shown: {shown!r}")
        time.sleep(0.5)
    raise TimeoutError(f"no widget {locator} after {timeout} s")


def settle(page, locator, timeout: float = 60, quiet: float = 1.0) -> str:
    """Wait until the kernel is idle and `locator`'s HTML has not changed for `quiet`
    seconds; return that HTML."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        idle = kernel_idle(page)
        now = locator.inner_html()
        if now != last or not idle:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        time.sleep(0.2)
    raise TimeoutError(f"the page did not settle in {timeout} s")


def image_pixels(png: bytes):
    """A PNG as an RGBA array."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def shown_images(locator) -> list[bytes]:
    """The PNG bytes of every `data:` image under the locator, in page order."""
    import base64

    sources = locator.locator("img").evaluate_all("images => images.map(image => image.src)")
    prefix = "data:image/png;base64,"
    return [base64.b64decode(src[len(prefix) :]) for src in sources if src.startswith(prefix)]
