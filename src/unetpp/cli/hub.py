"""`unetpp push`: share a trained model on the Hugging Face Hub (or write the same folder locally)."""

from __future__ import annotations

import argparse

from .common import examples, subcommand


def cmd_push(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..models.hub import push_to_hub, save_pretrained

    if (args.repo is None) == (args.out is None):
        raise ConfigError("give --repo org/name to upload, or --out FOLDER to write the folder only (one of them)")
    if args.out is not None:
        folder = save_pretrained(args.checkpoint, args.out, overwrite=args.overwrite, license=args.license)
        print(f"wrote {folder}: model.safetensors, config.json, README.md (the model card)")
        print(f"next: unetpp push --checkpoint {args.checkpoint} --repo <org/name>")
        return 0
    url = push_to_hub(
        args.checkpoint,
        args.repo,
        private=args.private,
        revision=args.revision,
        commit_message=args.message,
        license=args.license,
    )
    print(f"uploaded model.safetensors, config.json and README.md to {args.repo}: {url}")
    print(f"use it: unetpp predict --checkpoint hf://{args.repo} --inputs images/ --out masks")
    return 0


def add_push(sub: argparse._SubParsersAction) -> None:
    p = subcommand(
        "push",
        "Share a trained model on the Hugging Face Hub: model.safetensors, config.json (model + preprocessing) and "
        "a model card (data, plan, scores per head and ensemble, pruning, the training command).",
        examples(
            "unetpp push --checkpoint runs/em/checkpoints/best.ckpt --repo my-lab/em-unetpp --private",
            "unetpp push --checkpoint em_pruned.pt --out shared/em-unetpp-l2   # the folder only, to read the card",
        ),
        sub,
    )
    p.add_argument("--checkpoint", required=True, help="a run's best.ckpt, a saved or pruned .pt, a .safetensors")
    p.add_argument("--repo", help="the Hub repository, org/name (created if new; log in with `hf auth login`)")
    p.add_argument("--out", help="instead of uploading, write the folder here")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", help="upload to this branch (created if new; default main)")
    p.add_argument("--message", help="the commit message")
    p.add_argument("--license", default="other", help="the card's licence, e.g. mit, cc-by-4.0 (default other)")
    p.add_argument("--overwrite", action="store_true", help="with --out: replace files that exist")
    p.set_defaults(handler=cmd_push)
