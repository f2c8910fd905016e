// The builder: assembles a MicroVm from a VmConfig in one linear function (Firecracker's
// builder.rs style), with a comment wherever order matters, and returns it paused: nothing
// runs until MicroVm::start(). run.h runs it. Main thread only.
#pragma once

#include "microvm.h"  // build_microvm(), declared next to the class it builds
