// povstorm test scene: prints what the animation code computed, then renders
// a sphere whose colour follows the clock (so frames differ).
#version 3.7;
global_settings { assumed_gamma 1 }
#debug concat("CLK f=", str(frame_number, 0, 0), " c=", str(clock, 0, 15), "\n")
#ifdef (Speed) #debug concat("DECL Speed=", str(Speed, 0, 6), "\n") #end
#ifdef (Label) #debug concat("DECL Label=", Label, "\n") #end
camera { location <0, 0, -3> look_at 0 }
light_source { <2, 3, -4> color rgb 1 }
sphere { 0, 1 pigment { color rgb <mod(clock, 1), 0.5, 1 - mod(clock, 1)> } }
