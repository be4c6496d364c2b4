"""Stylize a video file frame by frame with any tensor-in/tensor-out stylization.

Decoding, stylizing and encoding run in three threads joined by bounded queues, so a long clip
uses the same memory as a short one: at most `queue_size` decoded frames wait for the network,
one batch is in it, and at most `queue_size` stylized frames wait for the encoder (which keeps
its own bounded look-ahead). PyAV (FFmpeg) decodes and encodes; the output keeps the input's
resolution, frame timestamps (hence frame rate, variable ones included), rotation (the container's
display matrix) and colour tags, and its audio: packets are copied unchanged when the output
container accepts the codec, and re-encoded to the container's default audio codec otherwise.

Temporal smoothing (fast_nst.stylize.temporal) and the flicker metric are applied in frame order on the
network's output before it is quantised for the encoder.

    probe.py     the header (`probe_video`) and the check that the whole file decoded
    streams.py   the output's encoder, video stream and audio plans (copy or re-encode)
    pipeline.py  `stylize_video`: the decode, stylize and encode stages
"""

from fast_nst.io.images import VIDEO_EXTENSIONS
from fast_nst.stylize.video.pipeline import Stylize, VideoProgress, VideoReport, stylize_video
from fast_nst.stylize.video.probe import VideoError, VideoInfo, check_complete, probe_video

__all__ = ["VIDEO_EXTENSIONS", "Stylize", "VideoError", "VideoInfo", "VideoProgress", "VideoReport", "check_complete",
           "probe_video", "stylize_video"]
