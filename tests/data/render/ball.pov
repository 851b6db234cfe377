// A ball rolling over a checkered floor; the ball itself lives in ball.inc,
// which the tests upload as a shared input.
#version 3.7;
#include "colors.inc"
#include "ball.inc"

camera { location <0, 1, -4> look_at <0, 0.5, 0> }
light_source { <-3, 5, -4> color White }
plane { y, 0 pigment { checker color White color Gray50 } }
object { Ball translate <clock * 2 - 1, 0.5, 0> }
