"""Policy simulation: a pupil's register history and staff actions, run through the real
workflows on a time-skipping Temporal server, to see what a school's policy would do."""
