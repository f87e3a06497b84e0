"""System 2's driving vision-language model (after DriveVLM, arXiv 2402.12289), trained here.

``answer.py`` the answer (scene description, analysis, meta-actions, decision, waypoints), its text
and parser; ``prompt.py`` the question; ``text.py`` ground-truth answers from the privileged world
and the expert's future; ``data.py`` datasets; ``tokenizer.py``, ``config.py``, ``model.py`` and
``checkpoint.py`` the model; ``train.py`` and ``evaluate.py``; ``backend.py`` the interface System 2
asks through; ``commands.py`` the command-line functions. Figures: ``MODEL_CARD.md``.
"""
