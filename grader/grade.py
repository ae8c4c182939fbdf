"""`grade()`: one submission zip in, one GradeReport out — intake, plan, sandboxed run, trusted scoring."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from grader import intake, sandbox
from grader.assignments import FUNCTION_KINDS, MODEL_KINDS, AssignmentSpec
from grader.evaluators.base import Evaluator, HarnessOutput
from grader.report import CheckResult, ErrorCode, GradeError, GradeReport, Message

log = logging.getLogger(__name__)


def evaluator_for(kind: str) -> Evaluator:
    if kind in MODEL_KINDS:
        from grader.evaluators.models import EVALUATOR as model_evaluator

        return model_evaluator
    if kind in FUNCTION_KINDS:
        from grader.evaluators.functions import EVALUATOR as function_evaluator

        return function_evaluator
    raise ValueError(f"no evaluator for assignment kind {kind!r}")


def verdict(
    spec: AssignmentSpec, score: float, metrics: dict[str, Any], checks: list[CheckResult]
) -> tuple[bool, list[CheckResult]]:
    """A graded result judged again under `spec`'s pass mark (the course changed it after grading):
    whether it passes, and its checks as they then read. No student code runs."""
    return evaluator_for(spec.kind).verdict(spec, score, metrics, checks)


def limits_for(spec: AssignmentSpec, device: str) -> sandbox.SandboxLimits:
    return sandbox.SandboxLimits(
        timeout_s=spec.timeout_s,
        cpu_s=int(spec.timeout_s * 4) + 10,
        memory_mb=None if device == "cuda" else spec.memory_mb,
        max_processes=spec.max_processes,
    )


_NATIVE_CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


def _error_from_run(
    run: sandbox.SandboxRun,
    spec: AssignmentSpec,
    limits: sandbox.SandboxLimits,
    where: Message | None = None,
    submission: Path | None = None,
) -> GradeError | None:
    """Translate how the sandboxed process ended into a student-facing error (None: it succeeded).
    `where` is what the harness was doing when it stopped without a result ("while calling relu(x)");
    `submission` is the unpacked submission the sandbox ran."""
    at_en, at_zh = (f" {where.en}", where.zh) if where else ("", "")
    lead_zh = f"{at_zh}，" if where else ""
    if run.timed_out:
        if not spec.is_model:
            advice_en = (
                "Make sure nothing slow runs when your file is imported (tests belong under "
                '`if __name__ == "__main__":`) and that none of your functions loops forever.'
            )
            advice_zh = '请确认导入文件时不会执行耗时的代码（测试代码应放在 `if __name__ == "__main__":` 下），且函数中没有死循环。'
        else:
            advice_en = (
                'Make sure nothing runs at import time (training belongs under `if __name__ == "__main__":`) '
                "and that forward() has no endless loop."
            )
            advice_zh = '请确认导入时不会执行任何训练（训练代码应放在 `if __name__ == "__main__":` 下），且 forward() 中没有死循环。'
        return GradeError(
            ErrorCode.timeout,
            f"Your code did not finish within {spec.timeout_s:g} s and was stopped{at_en}. {advice_en}",
            f"你的代码没有在 {spec.timeout_s:g} 秒内完成，{at_zh}已被终止。{advice_zh}",
        )
    if run.bad_result:
        return GradeError(
            ErrorCode.bad_output,
            f"The grader could not read your code's output: {run.bad_result}.",
            f"评测无法读取你的代码的输出：{run.bad_result}。",
        )
    result = run.result
    if run.oom_killed:  # a process of it was killed, so its result, if any, is not what it meant
        total = (limits.memory_mb or 0) + limits.tmpfs_mb
        return GradeError(
            ErrorCode.memory_limit,
            f"Your code used more than the {total} MB one evaluation may use in all (its memory, that of any "
            f"processes it started, and the files it wrote to /tmp), and was stopped{at_en}. Evaluate in "
            f"batches, don't start processes, and don't write large files.",
            f"{lead_zh}你的代码使用的内存超过了一次评测总共允许的 {total} MB（包括它自己的内存、它启动的进程的内存，"
            f"以及它写入 /tmp 的文件），已被终止。请分批计算，不要启动进程，也不要写入大文件。",
        )
    if result is None:
        sig = run.signal
        if sig == signal.SIGXCPU:
            return GradeError(
                ErrorCode.timeout,
                f"Your code used more than {limits.cpu_s} s of CPU time and was stopped.",
                f"你的代码占用的 CPU 时间超过 {limits.cpu_s} 秒，已被终止。",
            )
        if sig == signal.SIGKILL:
            return GradeError(
                ErrorCode.memory_limit,
                f"Your code was killed{at_en}, most likely for using more than {spec.memory_mb} MB of memory.",
                f"{lead_zh}你的代码被强制终止，很可能是因为内存使用超过了 {spec.memory_mb} MB。",
            )
        if sig == signal.SIGXFSZ:
            return GradeError(
                ErrorCode.crashed,
                f"Your code tried to write a file larger than {limits.file_mb} MB and was stopped.",
                f"你的代码试图写入超过 {limits.file_mb} MB 的文件，已被终止。",
            )
        logs = run.stderr_tail + run.stdout_tail
        if "Thread creation failed" in logs or "can't start new thread" in logs:
            return GradeError(
                ErrorCode.process_limit,
                f"Your code started too many processes or threads (the limit is {limits.max_processes}), so "
                f"the model could not run. Don't start processes at import time, and use DataLoader with "
                f"num_workers=0 in code the grader imports.",
                f"你的代码创建了过多的进程或线程（上限 {limits.max_processes}），模型无法运行。不要在导入时启动进程；"
                f"评测会导入的代码中 DataLoader 请使用 num_workers=0。",
            )
        if sig in _NATIVE_CRASHES:
            name = signal.Signals(sig).name
            return GradeError(
                ErrorCode.crashed,
                f"Your code crashed{at_en} ({name}, signal {sig}) before the grader got a result: a fault in "
                f"native code, such as ctypes, a C extension, or a library called with invalid arguments. "
                f"See the log below, and run the same step on your own computer to find the call.",
                f"{lead_zh}你的代码在评测拿到结果之前崩溃了（{name}，信号 {sig}）：这是本地代码（ctypes、C 扩展，"
                f"或以无效参数调用的库）中的错误。请查看下方日志，并在自己的电脑上运行同一步骤以找到出错的调用。",
            )
        how = f"signal {sig}" if sig else f"exit code {run.returncode}"
        return GradeError(
            ErrorCode.crashed,
            f"Your code ended the process{at_en} before the grader got a result ({how}). Don't call "
            f"os._exit() (or kill the process) in code the grader runs: return results instead; see the "
            f"log below.",
            f"{lead_zh}你的代码在评测拿到结果之前结束了进程（{how}）。不要在评测会运行的代码里调用 os._exit()"
            f"（或结束进程），请返回结果；请查看下方日志。",
        )
    if not result.get("ok"):
        err = result.get("error")
        err = err if isinstance(err, dict) else {}
        raw_code = str(err.get("code", "crashed"))
        message = _capped(err.get("message", "unknown error"))
        message_zh = _capped(err.get("message_zh", message))
        if raw_code == "crashed" and (
            "can't allocate memory" in message or "out of memory" in message.lower()
        ):
            raw_code = "memory_limit"
        if raw_code not in HARNESS_CODES or (
            raw_code == ErrorCode.too_large and not _copy_could_fail(submission, limits)
        ):
            # The student's code wrote this result itself (it shares the harness's process and so
            # its file descriptors): refuse a code only the grader gives, such as one that would not
            # count against the daily limit or that would make the worker grade it again.
            claimed = "".join(c for c in raw_code if c.isprintable())[:40]
            return GradeError(
                ErrorCode.crashed,
                f"Your code wrote a result of its own instead of returning one (it claimed the error "
                f"{claimed!r}, which only the grader gives). Don't write to file descriptors your code "
                f"did not open; return your outputs, and upload again.",
                f"你的代码自行写入了结果，而不是返回结果（它声称出现了只有评测程序才会给出的错误 {claimed!r}）。"
                f"请不要写入不是你的代码打开的文件描述符；请返回输出，然后重新上传。",
            )
        return GradeError(ErrorCode(raw_code), message, message_zh)
    return None


# The codes the harness gives for a submission's problem; any other code in a result was written by
# the student's code (see _error_from_run).
HARNESS_CODES = frozenset(
    {
        ErrorCode.ambiguous_model,
        ErrorCode.bad_output,
        ErrorCode.crashed,
        ErrorCode.import_failed,
        ErrorCode.load_failed,
        ErrorCode.memory_limit,
        ErrorCode.missing_function,
        ErrorCode.no_model_found,
        ErrorCode.process_limit,
        ErrorCode.too_large,  # its copy of the submission did not fit (see _copy_could_fail)
    }
)
MESSAGE_MAX_CHARS = 4000
_TMPFS_BLOCK = 4096


def _capped(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MESSAGE_MAX_CHARS else text[:MESSAGE_MAX_CHARS] + " [...]"


def _copy_could_fail(submission: Path | None, limits: sandbox.SandboxLimits) -> bool:
    """Whether the harness's copy of the unpacked submission into the sandbox's /tmp could have run
    out of room (its `too_large`): only for a submission taking half that tmpfs or more, counting each
    file in whole blocks. Nothing else is on the tmpfs before the copy, so for a smaller one that code
    was written by the student's code."""
    if submission is None:
        return True
    total = 0
    for dirpath, _, files in os.walk(submission):
        for name in files:
            try:
                size = os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
            total += -(-size // _TMPFS_BLOCK) * _TMPFS_BLOCK
    return total * 2 >= limits.tmpfs_mb * 1024 * 1024


FOUND_MAX_KEYS = 32
FOUND_VALUE_MAX_BYTES = 4096


def _harness_timings(raw: Any) -> dict[str, float]:
    """The harness's own timings for the report: finite numbers under short names, at most 16 (the
    result is written in the student's process, so it may hold anything)."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for k, v in list(raw.items())[:16]:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"harness_{str(k)[:40]}"] = float(v)
    return out


def _found(info: dict[str, Any]) -> dict[str, Any]:
    """What the harness found (module, model class, candidates...) for the report's `discovery`,
    bounded: at most FOUND_MAX_KEYS entries, and an entry whose JSON is over FOUND_VALUE_MAX_BYTES is
    replaced by a note of its size (a forged result once made a 474-byte zip's report 63 MB)."""
    found: dict[str, Any] = {}
    for k, v in info.items():
        if k in ("traceback", "timings", "ops"):
            continue
        if len(found) == FOUND_MAX_KEYS:
            found["[left out]"] = f"{len(info) - FOUND_MAX_KEYS} more entries"
            break
        try:
            size = len(json.dumps(v))
        except (TypeError, ValueError):
            size = FOUND_VALUE_MAX_BYTES + 1
        found[str(k)[:64]] = v if size <= FOUND_VALUE_MAX_BYTES else f"[{size} bytes, left out]"
    return found


GRADE_DIR_PREFIX = "hwgrade-grade-"  # then the grading process's pid and "-"
_swept: set[tuple[int, Path]] = set()  # (pid, root): this process has swept that root


def _with_packaging_advice(err: GradeError, unpacked: intake.Unpacked, spec: AssignmentSpec) -> GradeError:
    """`err` (nothing to grade was found) with what the zip holds instead, where that is the cause: a
    zip inside the zip, or a notebook where a .py file was wanted (notebooks are kept, not graded)."""
    if err.code not in (ErrorCode.missing_function, ErrorCode.no_model_found, ErrorCode.bad_manifest):
        return err
    names = list(dict.fromkeys([*unpacked.files, *unpacked.attachments]))
    if any(n.lower().endswith(".py") for n in unpacked.files) and err.code != ErrorCode.missing_function:
        return err
    zips = [n for n in names if n.lower().endswith(".zip")]
    notebooks = [n for n in names if n.lower().endswith(".ipynb")]
    from grader.evaluators.functions import MODULES

    wanted = MODULES.get(spec.kind, "model.py")
    if zips:
        listed = ", ".join(zips[:3])
        en = (
            f"Your zip contains another zip ({listed}) instead of your files: upload that zip itself, or unpack it "
            "and zip the files it holds."
        )
        zh = f"你的 zip 里装的是另一个 zip（{listed}），而不是你的文件：请直接上传那个 zip，或把它解压后重新打包其中的文件。"
    elif notebooks and not any(n.rsplit("/", 1)[-1] == wanted for n in unpacked.files):
        listed = ", ".join(notebooks[:3])
        what = "the code that defines your network" if spec.is_model else "your functions"
        what_zh = "定义网络的代码" if spec.is_model else "你的函数"
        en = (
            f"Your zip has a notebook ({listed}); notebooks are kept for your instructor but not run. Export "
            f"{what} as {wanted} (Jupyter: File > Download as > Python (.py); JupyterLab: File > Save and Export "
            "Notebook As > Executable Script) and zip it with the rest."
        )
        zh = (
            f"你的 zip 中有 notebook（{listed}）；notebook 会保留给教师，但不会被运行。请把{what_zh}导出为 {wanted}"
            "（Jupyter：File > Download as > Python (.py)；JupyterLab：File > Save and Export Notebook As > "
            "Executable Script），再与其他文件一起打包。"
        )
    else:
        return err
    return GradeError(err.code, f"{en} ({err.message})", f"{zh}（{err.message_zh}）")


def _remove_stale_grade_dirs(root: Path) -> None:
    """Once per process and root: remove the grading directories (unpacked submissions, up to the
    intake's size limit each) of processes that are gone: a worker killed mid-grading, which never
    reached grade()'s own clean-up. A directory whose pid is alive is kept, whoever has that pid now."""
    if (os.getpid(), root) in _swept:
        return
    _swept.add((os.getpid(), root))
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries if e.name.startswith(GRADE_DIR_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(GRADE_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(root / name, ignore_errors=True)


def grading_dir_root() -> Path:
    """Where grade() unpacks a submission: beside the sandbox's run directories (/dev/shm, see
    sandbox.run_dir_root) while that tmpfs has room for the largest submission intake accepts on top
    of what the run directories keep free, else the temp dir. Measured for the MNIST MLP example
    (400 KB): unpacking 4.7 -> 4.1 ms and removing it 0.9 -> 0.3 ms, against an ext4 temp dir."""
    root = sandbox.run_dir_root()
    if root != sandbox.RUN_DIR_TMPFS:
        return Path(tempfile.gettempdir())
    try:
        st = os.statvfs(root)
    except OSError:
        return Path(tempfile.gettempdir())
    if st.f_bavail * st.f_frsize < intake.IntakeLimits().max_total_bytes + sandbox.RUN_DIR_TMPFS_MIN_FREE:
        return Path(tempfile.gettempdir())
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def grade(
    zip_path: Path,
    spec: AssignmentSpec,
    *,
    data_dir: Path | None = None,
    device: str = "cpu",
    work_root: Path | None = None,
) -> GradeReport:
    """Grade one submission zip for `spec`; never raises for anything the submission contains."""
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    report_kw: dict[str, Any] = {}  # what is known so far, for the report whichever way it ends
    root = Path(work_root or grading_dir_root())
    _remove_stale_grade_dirs(root)
    tmp = Path(tempfile.mkdtemp(prefix=f"{GRADE_DIR_PREFIX}{os.getpid()}-", dir=root))
    tmp.chmod(0o711)
    held: sandbox.Held | None = None
    try:
        evaluator = evaluator_for(spec.kind)
        limits = limits_for(spec, device)
        # Under the warm pool the sandbox is made while the submission is unpacked and the job
        # prepared, into the directories it has already bound.
        held = sandbox.hold(
            tmp / "submission",
            limits,
            device=device,
            work_root=work_root,
            input_cache=evaluator.uses_input_cache,
        )
        t = time.perf_counter()
        unpacked = intake.unpack(Path(zip_path), tmp / "submission")
        timings["intake_s"] = time.perf_counter() - t
        report_kw["attachments"] = unpacked.attachments
        report_kw["attachments_root"] = unpacked.top_folder

        t = time.perf_counter()
        prepared = evaluator.prepare(spec, unpacked.root, data_dir)
        timings["prepare_s"] = time.perf_counter() - t
        report_kw["dataset"] = prepared.dataset
        if "plan" in prepared.job:
            report_kw["discovery"] = {"plan": prepared.job["plan"]}

        key = prepared.inputs_cache_key
        run = sandbox.run_job(
            unpacked.root,
            prepared.job,
            {} if key else prepared.inputs,
            limits,
            device=device,
            work_root=work_root,
            cache_inputs={name: (key, arr) for name, arr in prepared.inputs.items()} if key else None,
            held=held,
        )
        timings["sandbox_s"] = run.wall_s
        report_kw["sandbox"] = sandbox.describe(run.kind) + (
            ", one memory limit for the whole evaluation (cgroup)" if run.memory_cgroup else ""
        )
        logs = run.logs_tail()
        info = (run.result or {}).get("info") or {}
        if isinstance(info, dict):
            if info.get("traceback") and str(info["traceback"]).strip() not in logs:
                logs = (logs + "\n" + str(info["traceback"]))[-8000:]
            timings.update(_harness_timings(info.get("timings")))
            report_kw.setdefault("discovery", {})["found"] = _found(info)
        if run.stdout_bytes + run.stderr_bytes > 2 * limits.log_cap_bytes:
            logs = f"[output capped: {run.stdout_bytes + run.stderr_bytes} bytes printed]\n" + logs
        report_kw["logs_tail"] = logs

        err = _error_from_run(run, spec, limits, evaluator.where(prepared, run.stage), unpacked.root)
        if err is not None:
            raise _with_packaging_advice(err, unpacked, spec)
        t = time.perf_counter()
        scored = evaluator.score(spec, prepared, HarnessOutput(result=run.result or {}, arrays=run.arrays))
        timings["score_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        return GradeReport(
            status="graded",
            assignment=spec.slug,
            score=min(1.0, max(0.0, scored.score)),
            passed=scored.passed,
            metrics=scored.metrics,
            checks=scored.checks,
            hints=scored.hints,
            timings=timings,
            **report_kw,
        )
    except GradeError as e:
        timings["total_s"] = time.perf_counter() - t_start
        return GradeReport.failure(spec.slug, e, timings=timings, **report_kw)
    except sandbox.SandboxUnavailable as e:
        log.exception("sandbox unavailable")
        timings["total_s"] = time.perf_counter() - t_start
        err = GradeError(
            ErrorCode.sandbox_unavailable,
            f"The grading sandbox is not available on this worker ({e}); your submission is kept and will be "
            f"graded again. Nothing for you to fix.",
            f"本评测机的沙箱暂不可用（{e}）；你的提交已保存，将重新评测。你无需做任何修改。",
        )
        return GradeReport.failure(spec.slug, err, timings=timings, **report_kw)
    except Exception:
        log.exception("internal grader error")
        timings["total_s"] = time.perf_counter() - t_start
        err = GradeError(
            ErrorCode.internal,
            "The grader failed on its own side (not because of your code). Your submission is kept; the "
            "instructors have the details.",
            "评测程序自身出错（不是你的代码的问题）。你的提交已保存，教师可以看到详细信息。",
        )
        tb = traceback.format_exc(limit=-6)
        return GradeReport.failure(spec.slug, err, timings=timings, grader_traceback=tb[-4000:], **report_kw)
    finally:
        if held is not None:
            held.release()  # nothing once run_job used it
        shutil.rmtree(tmp, ignore_errors=True)
