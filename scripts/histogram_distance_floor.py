"""What a perfect generator would score on the VAE's and GAN's position measures.

    python scripts/histogram_distance_floor.py [--draws 6] [--samples 1000]

The reports compare the object-centre histogram of 1,000 generated images with that of the
training scenes (8x8 cells; 0 would be the same histogram). A finite sample of the data itself
does not score 0: this draws ``--draws`` sets of ``--samples`` new real scenes, reads them with
the same object finder the measures use, and prints each set's histogram distance and cells
reached against the training scenes of seed 0, then their range: the floor of the measure and
how far two equally good sample sets can lie apart.
"""

import argparse

import numpy as np

from rl_coordconv.supervised.objects import find_objects, position_coverage
from rl_coordconv.supervised.shapes import generate

TRAIN_SCENES = 4000  # GenerativeConfig's train_scenes, seed 0
FIRST_DRAW_SEED = 101  # clear of the train (0-2) and test (10,000+) scene seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=6, help="sets of new real scenes")
    parser.add_argument("--samples", type=int, default=1000, help="scenes per set (the measures' sample count)")
    args = parser.parse_args()
    data_centres = generate(TRAIN_SCENES, seed=0).centres()
    distances = []
    for seed in range(FIRST_DRAW_SEED, FIRST_DRAW_SEED + args.draws):
        found = [(o.row, o.col) for image in generate(args.samples, seed=seed).images for o in find_objects(image)]
        coverage = position_coverage(data_centres, np.array(found).reshape(-1, 2))
        distances.append(coverage["histogram_distance"])
        print(f"scene seed {seed}: histogram distance {distances[-1]:.4f}, cells reached {coverage['cells_reached']:.4f}")
    print(f"histogram distance of real scenes: {min(distances):.3f} to {max(distances):.3f}, mean {np.mean(distances):.3f}")


if __name__ == "__main__":
    main()
