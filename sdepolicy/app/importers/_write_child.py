"""Writes an imported dataset's HDF5 file in a child process (run as a script, so it imports
only Minari): h5py does not recover from a failed write (a full disk ends the process with a
segmentation fault and hundreds of ignored exceptions), so the importer lets this process take
the failure and reports it in one line. Reads a pickle from its standard input, written by
`_core._write` of the same installation:
`{"path", "observation_space", "action_space", "metadata", "episodes"}`."""

import pickle
import sys


def main() -> int:
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    job = pickle.load(sys.stdin.buffer)
    obs_space, act_space = job["observation_space"], job["action_space"]
    storage = MinariStorage.new(job["path"], observation_space=obs_space, action_space=act_space)
    storage.update_metadata({**job["metadata"], "minari_version": minari.__version__})
    storage.update_episodes(
        EpisodeBuffer(
            id=i,
            observations=ep["observations"].astype(obs_space.dtype),
            actions=ep["actions"].astype(act_space.dtype),
            rewards=ep["rewards"],
            terminations=ep["terminations"],
            truncations=ep["truncations"],
            infos={},
        )
        for i, ep in enumerate(job["episodes"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
