"""Import an offline-RL file recorded by another library as a local Minari dataset.

Formats: D4RL and d3rlpy 1.x HDF5, stable-baselines GAIL .npz, cs285 and hand_dapg pickles
(detected from the extension and the keys). The known real files (README, "Real data recorded
by others") need only --id.

    python examples/import_dataset.py d3rlpy_pendulum_random.h5 --id imported/pendulum-random-v0
    python examples/import_dataset.py hopper-medium-replay-v2.hdf5 --id d4rl/hopper-mr-v0 \\
        --env Hopper-v4 --ref-min -20.272305 --ref-max 3234.3 --check-replay 200
    python examples/d4rl_train.py --dataset imported/pendulum-random-v0
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("file", help="the file to import")
    p.add_argument("--id", required=True, help="Minari dataset id to create, (namespace/)name-vN")
    p.add_argument("--env", help="Gymnasium id the data was recorded in (default: known files')")
    p.add_argument(
        "--format", default="auto", help="auto, d4rl, d3rlpy, sb_npz, cs285 or dapg (default auto)"
    )
    p.add_argument("--ref-min", type=float, help="reference return of a random policy")
    p.add_argument("--ref-max", type=float, help="reference return of an expert")
    p.add_argument("--provenance", help="free text stored with the automatic provenance")
    p.add_argument(
        "--check-replay", type=int, default=0, metavar="N", help="replay N transitions first"
    )
    p.add_argument(
        "--clip-actions",
        action="store_true",
        help="clip actions into the env's box (default: "
        "only for known files whose environment clips them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from sdepolicy.app import SdepolicyError

    try:
        from sdepolicy.app.importers import describe, import_dataset

        dataset = import_dataset(
            args.file,
            args.id,
            env_id=args.env,
            format=args.format,
            ref_min_score=args.ref_min,
            ref_max_score=args.ref_max,
            provenance=args.provenance,
            overwrite=args.overwrite,
            check_replay_steps=args.check_replay,
            clip_actions=True if args.clip_actions else None,
        )
        d = describe(dataset)
    except SdepolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote Minari dataset {args.id} ({dataset.storage.data_path})")
    print(f"  env id        {d['env_id']}")
    print(f"  episodes      {d['episodes']}")
    print(f"  transitions   {d['transitions']}")
    print(f"  mean return   {d['mean_return']:.1f}")
    if d["ref_min_score"] is not None:
        print(f"  references    {d['ref_min_score']:g} (min) / {d['ref_max_score']:g} (max)")
    replay = dataset.storage.metadata.get("replay_check")
    if replay is not None:
        if replay["supported"] and replay["transitions"]:
            print(
                f"  replay check  {replay['note']}: max |obs error| {replay['max_obs_error']:.3g}"
                f", max |reward error| {replay['max_reward_error']:.3g} (medians "
                f"{replay['median_obs_error']:.2g}, {replay['median_reward_error']:.2g})"
            )
        else:
            print(f"  replay check  not done: {replay['note']}")
    print(f"  provenance    {d['provenance']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
