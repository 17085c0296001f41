#include "model/tokenizer/pretokenize.h"

#include <gtest/gtest.h>
