"""``python -m dualdrive.vlm``: the VLM commands on their own, until ``dualdrive`` registers them."""
from __future__ import annotations

import typer

from dualdrive.vlm.commands import eval_vlm_cmd, gen_vlm_data, train_vlm_cmd

app = typer.Typer(add_completion=False, no_args_is_help=True, help="dualdrive's driving VLM (System 2)")
app.command("gen-vlm-data")(gen_vlm_data)
app.command("train-vlm")(train_vlm_cmd)
app.command("eval-vlm")(eval_vlm_cmd)

if __name__ == "__main__":
    app()
