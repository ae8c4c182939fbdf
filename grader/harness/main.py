"""In-sandbox harness: the only trusted code that runs inside the sandbox.

This directory is mounted read-only into the sandbox and run as `python -I main.py /job/job.json`. It
must stay standalone: it imports nothing from `grader`, `reference` or `service` (those are not
visible inside), only the standard library, numpy and torch, and its sibling files, which it loads
by path under private module names so that a student's `model.py` can never shadow them.

Protocol
--------
job.json (written by the trusted side, read-only inside):
    uid, gid          the dedicated unprivileged ids to drop to before touching any student file
    out_fd            an inherited file descriptor to write the result to (no writable mount exists)
    limits            {"cpu_s", "memory_mb", "max_processes", "file_mb", "open_files"}
    threads           torch intra-op threads
    submission        read-only mount of the unpacked submission; copied to `workdir` (tmpfs)
    workdir           the student's writable working directory (private tmpfs)
    inputs            {name: path to .npy}, loaded with allow_pickle=False
    done_fd           optional inherited fd: one byte is written to it once the result is complete
    kind              "model" or "functions"; the rest of the job is for that kind's module
    preimport         optional: modules to import before dropping privileges (warm, and readable)

Result written to out_fd (read back by grader.sandbox.read_result, which trusts none of it; until
then out_fd holds the stage the harness is in, see PROGRESS_MAGIC):
    RESULT_MAGIC, then the header's length (8 bytes, little-endian), then the header: UTF-8 JSON
    {"result": {"ok": bool, "error": {"code", "message", "message_zh"} | null, "info": {...}},
    "arrays": [{"name", "dtype" (numpy's dtype.str), "shape", "offset", "nbytes"}]}, then each of the
    kind module's output arrays, raw, C order, at its offset from the start (a multiple of 64).

A kind module (`models.py`, `functions.py`) defines `run(job, inputs) -> (arrays, info)` and raises
`HarnessError` (injected into it as a module global) for a problem the student should fix.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


class HarnessError(Exception):
    def __init__(self, code: str, message: str, message_zh: str, **info: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_zh = message_zh
        self.info = info


def _load_sibling(name: str) -> ModuleType:
    loaded = sys.modules.get(f"_hwgrade_harness_{name}")
    if loaded is not None:
        # Preloaded by the zygote (a fresh forked copy): no file access needed inside the sandbox.
        return loaded
    spec = importlib.util.spec_from_file_location(f"_hwgrade_harness_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.HarnessError = HarnessError  # type: ignore[attr-defined]
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    # Set again after execution: a module may declare a placeholder for type checkers.
    module.HarnessError = HarnessError  # type: ignore[attr-defined]
    module.hit_process_limit = hit_process_limit  # type: ignore[attr-defined]
    module.allocation_failed = allocation_failed  # type: ignore[attr-defined]
    module.AVAILABLE_EN, module.AVAILABLE_ZH = AVAILABLE_EN, AVAILABLE_ZH  # type: ignore[attr-defined]
    return module


# What student code may import while it is graded (what the grading image installs), for the
# import_failed messages of both kinds of assignment; the README's list says the same.
AVAILABLE = ["numpy", "torch", "pandas", "scikit-learn", "scipy", "joblib", "matplotlib", "safetensors"]
AVAILABLE += ["torchsummary", "mlxtend"]
AVAILABLE_EN = "the standard library, " + ", ".join(AVAILABLE[:-1]) + " and " + AVAILABLE[-1]
AVAILABLE_ZH = "标准库、" + "、".join(AVAILABLE[:-1]) + " 和 " + AVAILABLE[-1]


def allocation_failed(e: BaseException) -> bool:
    """Out of memory on the CPU: MemoryError, or torch's allocator failing under RLIMIT_AS
    ("RuntimeError: ... can't allocate memory")."""
    text = str(e)
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError) and ("can't allocate memory" in text or "DefaultCPUAllocator" in text)
    )


def hit_process_limit(text: str) -> bool:
    """Whether an exception, as "Type: message", is the process/thread limit (RLIMIT_NPROC): fork,
    subprocess or multiprocessing get EAGAIN, threading cannot start a thread."""
    return (text.startswith("BlockingIOError") and "Errno 11" in text) or "can't start new thread" in text


def _drop_privileges(job: dict[str, Any]) -> None:
    uid, gid = int(job["uid"]), int(job["gid"])
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("harness: refusing to run student code as root")


def _apply_limits(limits: dict[str, Any]) -> None:
    def cap(res: int, value: int) -> None:
        soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))

    cap(resource.RLIMIT_CPU, int(limits["cpu_s"]))
    if limits.get("memory_mb"):
        cap(resource.RLIMIT_AS, int(limits["memory_mb"]) * 1024 * 1024)
    cap(resource.RLIMIT_NPROC, int(limits["max_processes"]))
    cap(resource.RLIMIT_FSIZE, int(limits["file_mb"]) * 1024 * 1024)
    cap(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    cap(resource.RLIMIT_CORE, 0)


def _copy_submission(src: Path, dst: Path) -> None:
    # The mount is read-only; students' scripts may write next to their files, so they get a copy on
    # the size-limited private tmpfs.
    shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True)


def _copy_failed(src: Path, exc: OSError) -> HarnessError:
    """The error for a submission that could not be copied to the working directory: the grader's
    step, not the student's code, so the message says what to change in the zip."""
    total = 0
    for dirpath, _, files in os.walk(src):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    mb = f"{total / (1 << 20):.0f} MB"
    detail = str(exc.args[0][0][2]) if isinstance(exc, shutil.Error) and exc.args[0] else str(exc)
    return HarnessError(
        "too_large",
        f"The grader could not copy your files ({mb} unpacked) into the working folder your code runs "
        f"in: {detail}. Leave out datasets and other files the model does not need, and upload again.",
        f"评测无法把你的文件（解压后 {mb}）复制到代码运行的工作目录：{detail}。"
        f"请去掉数据集等模型不需要的文件后重新上传。",
    )


def _raised(e: BaseException, limits: dict[str, Any]) -> dict[str, str]:
    """The error for an exception out of the student's code: out of memory (MemoryError, or torch's
    allocator failing under RLIMIT_AS: "RuntimeError: ... can't allocate memory"), the process limit
    (fork's EAGAIN, "can't start new thread"), or anything else as `crashed` with the exception."""
    text = f"{type(e).__name__}: {e}"
    mb = limits.get("memory_mb")
    if allocation_failed(e):
        limit_en, limit_zh = (f" (limit {mb} MB)", f"（{mb} MB）") if mb else ("", "")
        return {
            "code": "memory_limit",
            "message": f"Your code ran out of memory{limit_en}. Evaluate in batches, don't keep large "
            f"tensors you no longer need, and load nothing big at import time. ({text[:300]})",
            "message_zh": f"你的代码超出了内存限制{limit_zh}。请分批计算，不要保留不再需要的大张量，也不要在导入时"
            f"加载大文件。（{text[:300]}）",
        }
    if hit_process_limit(text):
        n = limits.get("max_processes")
        return {
            "code": "process_limit",
            "message": f"Your code started too many processes or threads (the limit is {n}), so the model "
            "could not run. Don't start processes at import time, and use DataLoader with num_workers=0 in "
            "code the grader imports.",
            "message_zh": f"你的代码创建了过多的进程或线程（上限 {n}），模型无法运行。不要在导入时启动进程；"
            "评测会导入的代码中 DataLoader 请使用 num_workers=0。",
        }
    at = _student_frame(e)
    at_en = f" at {at[0]} line {at[1]}, in {at[2]}" + (f": `{at[3]}`" if at[3] else "") if at else ""
    at_zh = (
        f"（位于 {at[0]} 第 {at[1]} 行，{at[2]} 中" + (f"：`{at[3]}`" if at[3] else "") + "）" if at else ""
    )
    return {
        "code": "crashed",
        "message": f"Your code raised {text[:500]}{at_en}. The full traceback is in the output of your code "
        "below: fix that, check the zip on your own computer with `hwgrade check`, and upload again.",
        "message_zh": f"你的代码抛出了异常 {text[:500]}{at_zh}。完整的 traceback 在下方你的代码的输出中：请修改后先在"
        "自己的电脑上用 `hwgrade check` 检查压缩包，再重新上传。",
    }


def _student_frame(e: BaseException) -> tuple[str, int, str, str] | None:
    """Where in the student's files `e` was raised: the innermost frame under the working directory
    (their copied submission), as (file, line, function, source line); None if it came from elsewhere."""
    here = os.getcwd().rstrip("/") + "/"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(here)]
    if not frames:
        return None
    f = frames[-1]
    return f.filename[len(here) :], f.lineno or 0, f.name, (f.line or "").strip()[:160]


RESULT_MAGIC = b"HWGRADE-RESULT-1\n"
RESULT_ALIGN = 64
# Until the result replaces it, out_fd holds what the harness is doing: PROGRESS_MAGIC, then a small
# JSON object of strings ({"what": "import", "file": "model.py"}, {"what": "op", "id": "c3"}, ...),
# so that a run killed for its time, or ended by os._exit() or a crash, can say where it was.
PROGRESS_MAGIC = b"HWGRADE-PROGRESS-1\n"


def _progress_writer(fd: int) -> Any:
    """progress(what=..., **details): record the current stage in out_fd (two syscalls, a few us)."""

    def progress(**stage: Any) -> None:
        data = PROGRESS_MAGIC + json.dumps({k: str(v)[:200] for k, v in stage.items()}).encode()
        try:
            os.ftruncate(fd, 0)  # first: a record cut short by a kill is empty, never mixed
            os.pwrite(fd, data, 0)
        except OSError:
            pass

    return progress


def _write_result(fd: int, arrays: dict[str, Any], result: dict[str, Any]) -> None:
    """Write the result in the format the module docstring gives: the arrays' own bytes, with no
    archive around them (an .npz built in memory took 0.5 ms and two copies of the output). An array
    of Python objects is described but not written: read_result refuses its dtype."""
    import numpy as np

    payload = [(str(k), np.asarray(v, order="C")) for k, v in arrays.items()]
    result_json = json.dumps(result, default=str)  # once: only the arrays' offsets change below
    # The header holds the offsets and the offsets follow the header: lay the arrays out after the
    # header as long as it last was, until its length no longer moves them.
    start, header = 0, b""
    while True:
        offset = start
        entries: list[dict[str, Any]] = []
        for name, arr in payload:
            nbytes = 0 if arr.dtype.hasobject else arr.nbytes
            entries.append(
                {
                    "name": name,
                    "dtype": arr.dtype.str,
                    "shape": list(arr.shape),
                    "offset": offset,
                    "nbytes": nbytes,
                }
            )
            offset += _aligned(nbytes)
        header = f'{{"result": {result_json}, "arrays": {json.dumps(entries)}}}'.encode()
        needed = _aligned(len(RESULT_MAGIC) + 8 + len(header))
        if needed <= start:
            break
        start = needed
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    _write_all(fd, RESULT_MAGIC + len(header).to_bytes(8, "little") + header)
    for entry, (_, arr) in zip(entries, payload, strict=True):
        if entry["nbytes"]:
            os.lseek(fd, int(entry["offset"]), os.SEEK_SET)
            _write_all(fd, arr.reshape(-1).view(np.uint8))
    os.close(fd)


def _aligned(n: int) -> int:
    """n rounded up to a multiple of RESULT_ALIGN."""
    return -(-n // RESULT_ALIGN) * RESULT_ALIGN


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# Set by the zygote before it forks an evaluation: inputs already in memory, by their path in here.
PRELOADED: dict[str, Any] = {}


def _load_input(path: str) -> Any:
    """np.load, except that a large input (a whole hidden test set) is mapped copy-on-write and
    pre-faulted: no copy of it per evaluation, and writes (student code working in place) stay private.
    Under the zygote it is usually already in memory (inherited copy-on-write)."""
    import mmap

    import numpy as np

    if path in PRELOADED:
        return PRELOADED[path]

    if os.path.getsize(path) <= (1 << 20):
        return np.load(path, allow_pickle=False)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise ValueError("object arrays are not inputs")
        offset = f.tell()
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.ndarray(shape, dtype=dtype, buffer=mapped, offset=offset, order="F" if fortran else "C")


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    out_fd = int(job["out_fd"])
    # Heavy, trusted imports happen before any student file is touched.
    import torch

    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    for name in job.get("preimport", []):
        # Libraries the job will need (pandas for a scaler, say), imported while still trusted.
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    kind_module = _load_sibling("models" if job["kind"] == "model" else "functions")
    kind_module.progress = _progress_writer(out_fd)  # type: ignore[attr-defined]

    _drop_privileges(job)
    # The copy before the limits: the submission has passed intake's size limits, and a file of it
    # larger than what the student's code may write (file_mb), a dataset left in the zip say, must
    # still be copied (under the limit the copy stopped with "File too large", blamed on their code).
    submission, workdir = Path(job["submission"]), Path(job["workdir"])
    copy_error: OSError | None = None
    try:
        _copy_submission(submission, workdir)
    except OSError as e:  # shutil.Error too
        copy_error = e
    _apply_limits(job["limits"])

    arrays: dict[str, Any] = {}
    result: dict[str, Any] = {"ok": True, "error": None, "info": {}}
    try:
        if copy_error is not None:
            raise _copy_failed(submission, copy_error)
        os.chdir(workdir)
        inputs = {name: _load_input(path) for name, path in job["inputs"].items()}
        arrays, info = kind_module.run(job, inputs)
        result["info"] = info
    except HarnessError as e:
        result = {
            "ok": False,
            "error": {"code": e.code, "message": e.message, "message_zh": e.message_zh},
            "info": e.info,
        }
    except BaseException as e:  # noqa: BLE001 - student code may raise anything, SystemExit included
        tb = traceback.format_exc(limit=-8)
        result = {"ok": False, "error": _raised(e, job["limits"]), "info": {"traceback": tb}}
        if not isinstance(e, MemoryError):
            sys.stderr.write(tb)
    _write_result(out_fd, arrays if result["ok"] else {}, result)
    if job.get("done_fd") is not None:
        # Tell the runner the result is complete, so it need not wait for this process tree to exit.
        try:
            os.write(int(job["done_fd"]), b"1")
        except OSError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: student objects' __del__ and atexit hooks must not run after the
    # result is written (and cannot change it).
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
