// Never finishes parsing: for the render timeout.
#version 3.7;
#declare I = 0;
#while (1)
  #declare I = I + 1;
#end
