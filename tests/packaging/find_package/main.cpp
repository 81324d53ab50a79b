#include <mnemo/mnemo.hpp>

int main() { return 0; }
