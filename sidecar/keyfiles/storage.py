"""Passphrases and writing key files: all or nothing, never overwriting, secrets created 0600.

Rules: a passphrase comes from a file, ``$SIDECAR_PASSPHRASE`` or a terminal prompt, never from the command
line (other users can read a process's arguments). A file's mode is set when it is created
(``os.open(..., mode)``), never by a chmod afterwards, so a secret is never briefly readable by others.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sidecar.keyfiles.documents import KeyFileError

PASSPHRASE_ENV = "SIDECAR_PASSPHRASE"


def read_passphrase(
    passphrase_file: str | os.PathLike[str] | None = None,
    *,
    confirm: bool = False,
    prompt: str = "Passphrase: ",
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The passphrase from ``passphrase_file``, else ``$SIDECAR_PASSPHRASE``, else a terminal prompt.

    The file's one trailing newline is dropped. ``confirm`` (when creating files) asks twice at the prompt.
    Never from the command line, where other users can read it in the process list.
    """
    if passphrase_file is not None:
        try:
            data = Path(passphrase_file).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from None
        try:
            passphrase = data.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise KeyFileError(f"passphrase file {passphrase_file} is not UTF-8 text") from None
        if not passphrase:
            raise KeyFileError(f"passphrase file {passphrase_file} is empty")
        return passphrase
    if PASSPHRASE_ENV in environ:
        if not environ[PASSPHRASE_ENV]:
            raise KeyFileError(f"{PASSPHRASE_ENV} is set but empty")
        return environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise KeyFileError(f"no passphrase: give --passphrase-file FILE or set {PASSPHRASE_ENV} "
                           "(no terminal to ask on)")
    passphrase = getpass.getpass(prompt)
    if not passphrase:
        raise KeyFileError("empty passphrase")
    if confirm and getpass.getpass("Repeat the passphrase: ") != passphrase:
        raise KeyFileError("the two passphrases differ")
    return passphrase


def check_new_files(directory: str | os.PathLike[str], names: list[str]) -> None:
    """Refuse (``KeyFileError``) when any of ``names`` exists in ``directory`` or it cannot be made there."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise KeyFileError(f"output {directory} exists and is not a directory")
    if not directory.exists() and not directory.parent.is_dir():
        raise KeyFileError(f"cannot create {directory}: parent directory {directory.parent} does not exist")
    for name in names:
        if (directory / name).exists() or (directory / name).is_symlink():
            raise KeyFileError(f"output file {directory / name} already exists; refusing to overwrite it")


def write_files(directory: str | os.PathLike[str], files: Mapping[str, tuple[bytes, int]]) -> list[Path]:
    """Write ``files`` (name -> (content, mode)) into ``directory``, all or nothing, overwriting nothing.

    Each file is created with its mode (0600 for secrets) in a private staging directory next to the target
    and then hard-linked into place, so a failure part way leaves no file behind. A missing ``directory`` is
    created (mode 0700) by renaming the staging directory.
    """
    directory = Path(directory)
    check_new_files(directory, list(files))
    parent = directory if directory.is_dir() else directory.parent
    staging = Path(tempfile.mkdtemp(prefix=".dvm-sidecar-staging-", dir=parent))
    try:
        for name, (content, mode) in files.items():
            _create(staging / name, content, mode)
        if not directory.exists():
            os.rename(staging, directory)
            return [directory / name for name in files]
        placed: list[Path] = []
        try:
            for name in files:
                os.link(staging / name, directory / name)
                placed.append(directory / name)
        except BaseException as exc:
            for path in placed:
                path.unlink(missing_ok=True)
            if isinstance(exc, FileExistsError):
                raise KeyFileError(f"output file {exc.filename2 or exc.filename} already exists; "
                                   "refusing to overwrite it") from None
            raise
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _create(path: Path, content: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as stream:
        stream.write(content)
        stream.flush()
        os.fsync(stream.fileno())
