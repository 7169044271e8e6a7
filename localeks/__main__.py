"""``python -m localeks up|down|serve|env``: the one entry point for the local EKS."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from localeks.accounts import parse_clusters
from localeks.cluster import DEFAULT_STATE, Paths, down, up
from localeks.supervisor import Supervisor


def main() -> None:
    parser = argparse.ArgumentParser(prog="localeks")
    parser.add_argument("command", choices=["up", "down", "serve"])
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("LOCALEKS_STATE", DEFAULT_STATE)))
    parser.add_argument("--name", default=os.environ.get("LOCALEKS_CLUSTER_NAME", "local-eks"))
    parser.add_argument(
        "--speed",
        type=float,
        default=float(os.environ.get("LOCALEKS_SPEED", "0.1")),
        help="kwok finishes a graceful delete after grace period x speed",
    )
    parser.add_argument(
        "--more-clusters",
        type=parse_clusters,
        default=parse_clusters(os.environ.get("LOCALEKS_MORE_CLUSTERS", "")),
        help="clusters besides --name, each with its own API server: name[@account][:tag=value]...,"
        " comma-separated, e.g. 'beta,gamma@210987654321:env=prod' (docs/local-eks.md)",
    )
    args = parser.parse_args()
    paths = Paths(args.state.resolve())
    if args.command == "up":
        env = up(paths, args.name, args.speed, more_clusters=args.more_clusters)
        print(f"localeks: cluster {env['CLUSTER_NAME']} at {env['LOCALEKS_API_URL']}; source {paths.env_file}")
    elif args.command == "down":
        down(paths)
        print("localeks: down")
    else:
        Supervisor(paths, args.name, args.speed, args.more_clusters).run()


if __name__ == "__main__":
    main()
