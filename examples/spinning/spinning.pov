// povstorm example: a spinning top. The parts live in top.inc (a local
// include the scanner uploads); colors.inc comes with POV-Ray itself.
#version 3.7;
#include "colors.inc"
#include "top.inc"

global_settings { assumed_gamma 1.0 }

camera {
  location <0, 2.2, -5.5>
  look_at <0, 0.9, 0>
  angle 40
}

light_source { <-4, 8, -6> color White * 0.9 }
light_source { <5, 3, -2> color rgb <0.4, 0.45, 0.6> shadowless }

plane {
  y, 0
  pigment { checker color rgb <0.85, 0.85, 0.8> color rgb <0.2, 0.25, 0.35> scale 0.75 }
  finish { reflection 0.15 }
}

sky_sphere { pigment { gradient y color_map { [0 color rgb <0.9, 0.9, 1>] [1 color rgb <0.3, 0.45, 0.8>] } } }

object {
  Top
  rotate <8 * sin(clock * 2 * pi), clock * 360, 0>
  translate <0.6 * sin(clock * 2 * pi), 0, 0.4 * cos(clock * 2 * pi)>
}
