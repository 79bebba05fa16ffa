"""One error type for every expected failure: it names the problem and the fix.

The CLI prints these as a single message and exits non-zero without a
traceback (``--debug`` shows one); anything else is a bug and keeps its trace.
"""


class EdgeTQSError(Exception):
    """An expected failure: ``problem`` says what is wrong, ``fix`` what to do."""

    exit_code = 2

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)

