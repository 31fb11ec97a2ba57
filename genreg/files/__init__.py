"""What genreg writes to disk: atomic writes (:mod:`~genreg.files.atomic`), checksummed safetensors
(:mod:`~genreg.files.tensors`), model files and checkpoints (:mod:`~genreg.files.model_files`), the run
folder's layout (:mod:`~genreg.files.run_folder`) and its lock file, one writer at a time
(:mod:`~genreg.files.lock`).
"""
