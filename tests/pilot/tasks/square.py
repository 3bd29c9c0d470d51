"""A JSON task: reads {"n": N} from argv[1], writes {"n": N, "square": N*N} to argv[2]."""

import json
import sys

with open(sys.argv[1]) as infile:
    event = json.load(infile)
with open(sys.argv[2], "w") as outfile:
    json.dump({"n": event["n"], "square": event["n"] ** 2}, outfile)
