"""The frost pictures: found in a user directory (the project cannot ship them), checked, decoded once.

The directory comes from the caller (`--frost-dir` on the command line) or, failing that, from the
environment variable ``SPARSECAP_FROST``. Without one, frost is **skipped** with a message (suite-wide
generation and the study measure leave it out and say so; asking for frost alone raises
`FrostUnavailableError`): the spec notes that a substitute texture changes the statistics, so none is
made up.

A usable directory holds the reference pictures frost1.png, frost2.png, frost3.png, frost4.jpg and
frost5.jpg (frost6.jpg is never used, as in the references). A directory without all five is used
whole: every .png/.jpg/.jpeg in it but frost6.jpg, sorted by name, the index then being drawn among those.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from sparsecap.corruptions.assets import user_path
from sparsecap.errors import FrostUnavailableError

FROST_ENV_VAR = "SPARSECAP_FROST"
REFERENCE_PICTURES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
UNUSED_PICTURE = "frost6.jpg"  # shipped with the references' pictures, drawn by neither generator
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR_RESIZE = 0.2  # CIFAR frost shrinks each picture by 0.2 (spec §2.2); MNIST uses it at full size


def frost_directory(directory: Path | str | None = None) -> Path | None:
    """The explicit directory, else ``$SPARSECAP_FROST``, else None (frost is then skipped)."""
    return user_path(directory, FROST_ENV_VAR)


def unavailable_message() -> str:
    return (
        "frost needs the frost pictures (frost1.png ... frost5.jpg of the reference generators), which "
        f"sparsecap cannot ship: pass --frost-dir DIR to sparsecap corrupt, or set ${FROST_ENV_VAR}=DIR "
        "(also read by sparsecap run)"
    )


def picture_files(directory: Path) -> list[Path]:
    """The pictures frost draws from, in index order; raises FrostUnavailableError if there are none."""
    if not directory.is_dir():
        raise FrostUnavailableError(f"frost directory {directory} does not exist or is not a directory")
    reference = [directory / name for name in REFERENCE_PICTURES]
    if all(path.is_file() for path in reference):
        return reference
    found = sorted(path for path in directory.iterdir()
                   if path.suffix.lower() in PICTURE_SUFFIXES and path.name != UNUSED_PICTURE and path.is_file())
    if not found:
        raise FrostUnavailableError(
            f"frost directory {directory} holds no pictures: expected {', '.join(REFERENCE_PICTURES)} "
            f"(or at least one {'/'.join(PICTURE_SUFFIXES)} file)"
        )
    return found


def _read(directory: Path) -> tuple[tuple[Path, bytes], ...]:
    """Each picture's bytes, read once so that the digest and the decoded pixels come from the same data."""
    files = []
    for path in picture_files(directory):
        try:
            files.append((path, path.read_bytes()))
        except OSError as error:
            raise FrostUnavailableError(f"frost picture {path} cannot be read ({error})") from error
    return tuple(files)


def _digest(files: tuple[tuple[Path, bytes], ...]) -> str:
    digest = hashlib.sha256()
    for path, content in files:
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def _decode(path: Path, content: bytes, grey: bool, minimum_side: int) -> np.ndarray:
    import cv2  # here, not at the top: finding and checksumming the pictures (a study's set-up) needs no OpenCV

    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    picture = cv2.imdecode(np.frombuffer(content, np.uint8), flag) if content else None  # b"" fails an assert
    if picture is None:
        raise FrostUnavailableError(f"frost picture {path} cannot be read as an image")
    if not grey:
        picture = cv2.resize(picture, (0, 0), fx=CIFAR_RESIZE, fy=CIFAR_RESIZE)[..., ::-1]  # BGR -> RGB
    if min(picture.shape[:2]) <= minimum_side:
        raise FrostUnavailableError(
            f"frost picture {path} is too small ({picture.shape[1]}×{picture.shape[0]} after "
            f"{'no' if grey else f'the {CIFAR_RESIZE}'} resize; a crop of {minimum_side}×{minimum_side} needs more)"
        )
    picture = np.ascontiguousarray(picture)
    picture.setflags(write=False)
    return picture


def load_pictures(directory: Path | str | None, *, grey: bool, side: int) -> tuple[np.ndarray, ...]:
    """The pictures ready for cropping: RGB shrunk by 0.2 (CIFAR) or grey at full size (MNIST)."""
    resolved = frost_directory(directory)
    if resolved is None:
        raise FrostUnavailableError(unavailable_message())
    files = _read(resolved)
    return _decoded(files, grey, side)


@functools.lru_cache(maxsize=4)
def _decoded(files: tuple[tuple[Path, bytes], ...], grey: bool, side: int) -> tuple[np.ndarray, ...]:
    """Decoded once per process and content (every draw of every frost entry crops the same pictures): keyed
    on the files' bytes, not on the folder, so pictures replaced in place are decoded afresh and always match
    `pictures_digest`. Bounded: a grey and an RGB set of one folder, at two crop sides."""
    return tuple(_decode(path, content, grey, side) for path, content in files)


def pictures_digest(directory: Path | str | None) -> str | None:
    """A checksum of the pictures used (for manifests and cache keys), or None without a directory."""
    resolved = frost_directory(directory)
    return None if resolved is None else _digest(_read(resolved))


def crops(pictures: tuple[np.ndarray, ...], count: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """One random side×side crop per image: picture index, then row and column offsets (spec order).

    Offsets are uniform on {0, ..., H - side - 1} as in the references (the last offset is never drawn).
    """
    index = rng.integers(0, len(pictures), size=count)
    heights = np.array([picture.shape[0] for picture in pictures])[index]
    widths = np.array([picture.shape[1] for picture in pictures])[index]
    rows = rng.integers(0, heights - side)
    cols = rng.integers(0, widths - side)
    channels = pictures[0].shape[2:]
    result = np.empty((count, side, side, *channels), dtype=np.uint8)
    span = np.arange(side)
    for picture_index, picture in enumerate(pictures):
        chosen = np.flatnonzero(index == picture_index)
        if chosen.size:
            r = rows[chosen, None, None] + span[None, :, None]
            c = cols[chosen, None, None] + span[None, None, :]
            result[chosen] = picture[r, c]
    return result
