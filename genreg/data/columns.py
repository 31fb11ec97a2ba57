"""The names of condition columns genreg itself knows."""

LABEL = "label"  # the class label's column
