"""A quality check of a step's output: planfleet runs it (as a task's or solver's ``qa``) when
the step's job succeeded, and retries the step with the findings as feedback when it fails.

This demo version checks that the solver said it was done and summarised what it did.
Return ``{"passed": bool, "findings": [...]}``.
"""


def main(task_id: str, output: dict | None = None, title: str = "", plan_id: int = 0,
         args: dict | None = None) -> dict:
    findings = []
    if not isinstance(output, dict):
        findings.append("the solver returned no report")
    else:
        if output.get("status", "ok") != "ok":
            findings.append(f"the solver reported status {output.get('status')!r}")
        if not str(output.get("summary") or "").strip():
            findings.append("the report has no summary of what was done")
    return {"passed": not findings, "findings": findings, "task_id": task_id}
