"""nbgrader's configuration for this course: run the nbgrader commands of the README in this folder.

The assignment is the folder solutions/ itself (source_directory "."), so nbgrader reads the
instructor notebooks where they are and writes release/, submitted/, autograded/, feedback/ and
gradebook.db beside them (all ignored by git).
"""
from course_lib.authoring import MARKDOWN_PROMPT, STUB
from course_lib.grading import sliced_polling_config

c = get_config()  # noqa: F821 - provided by traitlets when nbgrader loads this file

c.CourseDirectory.source_directory = "."
# The same stubs as `python -m course_lib build-notebooks`, so both make the same student copies.
c.ClearSolutions.code_stub = {"python": STUB}
c.ClearSolutions.text_stub = MARKDOWN_PROMPT
# Seconds per cell (nbgrader's default, 30, is shorter than the training cells of notebook 04 on a slow laptop).
c.Execute.timeout = 300
# Wait for kernel messages in 1 s slices: a missed wakeup then costs at most a second instead of
# the whole per-cell timeout (see course_lib/grading.py).
c.merge(sliced_polling_config())
