/* Device builds inside the ACAP SDK: build.rs runs bindgen on this file, which pulls in the REAL
 * SDK headers (found through pkg-config's include paths) instead of earshot_axsdk.h. */
#include <axsdk/axevent.h>
#include <axsdk/axparameter.h>
