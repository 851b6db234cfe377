// A scene with an undeclared identifier on line 5, for the failure path.
#version 3.7;
camera { location <0, 1, -4> look_at 0 }
light_source { <0, 5, -5> color rgb 1 }
sphere { 0, 1 pigment { color NoSuchColour } }
