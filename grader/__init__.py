"""An autograder for the course's deep-learning notebooks: intake -> sandbox -> probe -> judge ->
rubric -> report. `grader.pipeline.grade_submission` is the library entry point; `grade` (cli.py)
is a thin command line over it."""

__version__ = "0.1.0"
